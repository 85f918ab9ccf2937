import type { DeadLetter } from '../broker/dead-letters';
import type {
  WorkflowDetail,
  WorkflowFilter,
  WorkflowPage,
  WorkflowRecordSummary,
  WorkflowTimelineEntry,
} from '../history/types';
import { formatAge } from '../shared/age';
import { redactSecrets, redactValue } from '../shared/redact';
import type { QueueOverview } from './data';
import { html, type SafeHtml } from './html';

/**
 * The dashboard's pages, rendered on the server with {@link html} (every value escaped). All pages
 * sit one level below the dashboard's base, so relative links work wherever it is mounted.
 */

/** What every page needs to know about the dashboard. */
export interface PageContext {
  actionsEnabled: boolean;
  traceUrl: string | null;
  /** A short message after an action (built by the handler from numbers, never from the URL's text). */
  notice: string | null;
}

const NAV = [
  ['queues', './', 'Queues'],
  ['dead-letters', 'dead-letters', 'Dead letters'],
  ['workflows', 'workflows', 'Workflows'],
] as const;

export function layout(
  title: string,
  current: (typeof NAV)[number][0] | null,
  context: PageContext,
  body: SafeHtml,
  refreshSeconds?: number,
): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · arvo-postgres</title>
<link rel="stylesheet" href="assets/dashboard.css">
<script src="assets/dashboard.js" defer></script>
</head>
<body>
<header><span class="brand">arvo-postgres</span>
<nav>${NAV.map(([id, href, label]) => html`<a href="${href}"${id === current ? html` class="current"` : ''}>${label}</a>`)}</nav>
<span class="mode">${context.actionsEnabled ? 'actions enabled (token required)' : 'read-only'}</span></header>
<main${refreshSeconds ? html` data-refresh="${refreshSeconds}"` : ''}>
${context.notice ? html`<p class="notice">${context.notice}</p>` : ''}
${body}
</main>
</body>
</html>`;
}

function time(date: Date | null): SafeHtml {
  if (!date) return html`<span class="muted">-</span>`;
  return html`<time datetime="${date}" title="${date}">${formatAge(Date.now() - date.getTime())} ago</time>`;
}

function statusBadge(status: string | null): SafeHtml {
  return html`<span class="badge ${status ?? 'none'}">${status ?? '-'}</span>`;
}

function workflowLink(subject: string): SafeHtml {
  return html`<a class="subject mono" href="workflow?subject=${encodeURIComponent(subject)}">${subject}</a>`;
}

/** Trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`), or null. */
export function traceIdOf(traceparent: unknown): string | null {
  if (typeof traceparent !== 'string') return null;
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent.trim());
  return match && !/^0+$/.test(match[1]!) ? match[1]! : null;
}

function traceLink(traceparent: unknown, context: PageContext): SafeHtml {
  const traceId = traceIdOf(traceparent);
  if (!traceId) return html`<span class="muted">-</span>`;
  if (!context.traceUrl) return html`<code title="trace id">${traceId}</code>`;
  return html`<a class="mono" href="${context.traceUrl.replace('{traceId}', traceId)}" target="_blank" rel="noopener noreferrer">${traceId}</a>`;
}

function errorText(letter: DeadLetter): string {
  return letter.error ? redactSecrets(`${letter.error.name}: ${letter.error.message}`) : '-';
}

function oneLine(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function json(value: unknown): SafeHtml {
  return html`<pre>${JSON.stringify(redactValue(value), null, 2)}</pre>`;
}

/** Bars ▁..█ of completions per minute, oldest on the left. */
function sparkline(perMinute: number[]): string {
  const bars = '▁▂▃▄▅▆▇█';
  const max = Math.max(...perMinute);
  return [...perMinute]
    .reverse()
    .map((count) => (max === 0 ? bars[0] : bars[Math.round((count / max) * (bars.length - 1))]))
    .join('');
}

export function queuesPage(queues: QueueOverview[], context: PageContext, refreshSeconds: number): SafeHtml {
  const rows = queues.map((queue) => {
    const lastMinutes = queue.finishedPerMinute.reduce((sum, count) => sum + count, 0);
    return html`<tr>
<td class="mono">${queue.name}</td>
<td class="num">${queue.queued}</td><td class="num">${queue.active}</td><td class="num">${queue.deferred}</td>
<td class="num">${queue.failed}</td><td class="num">${queue.completed}</td>
<td class="num">${queue.deadLettered > 0 ? html`<a href="dead-letters?queue=${encodeURIComponent(queue.name)}">${queue.deadLettered}</a>` : '0'}</td>
<td class="num">${formatAge(queue.oldestQueuedAgeMs)}</td>
<td><span class="spark" title="finished per minute, oldest first: ${[...queue.finishedPerMinute].reverse().join(', ')}">${sparkline(queue.finishedPerMinute)}</span></td>
<td class="num">${(lastMinutes / queue.finishedPerMinute.length).toFixed(1)}</td>
</tr>`;
  });
  return layout(
    'Queues',
    'queues',
    context,
    html`<h1>Queues</h1>
<p class="muted">Exact counts from pg-boss's job table; refreshed every ${refreshSeconds} s.</p>
${
  queues.length === 0
    ? html`<p>No queues yet.</p>`
    : html`<table id="queues"><thead><tr><th>Queue</th><th class="num">Queued</th><th class="num">Active</th>
<th class="num">Deferred</th><th class="num">Failed</th><th class="num">Completed</th><th class="num">Dead-lettered</th>
<th class="num">Oldest waiting</th><th>Finished, last ${queues[0]!.finishedPerMinute.length} min</th><th class="num">Per minute</th></tr></thead>
<tbody>${rows}</tbody></table>`
}`,
    refreshSeconds,
  );
}

function tokenField(): SafeHtml {
  return html`<input type="password" name="token" placeholder="action token" autocomplete="off" required aria-label="action token">`;
}

function actionButtons(what: string): SafeHtml {
  return html`${tokenField()}
<button type="submit" formaction="replay">Replay ${what}</button>
<button type="submit" formaction="purge" class="danger" data-confirm="Delete ${what} for good?">Purge ${what}</button>`;
}

export interface DeadLetterListFilter {
  queue?: string;
  dlq?: string;
  limit: number;
}

export function deadLettersPage(
  letters: DeadLetter[],
  filter: DeadLetterListFilter,
  context: PageContext,
): SafeHtml {
  const back = `dead-letters?${new URLSearchParams(
    Object.entries({ queue: filter.queue, dlq: filter.dlq }).filter((entry): entry is [string, string] =>
      Boolean(entry[1]),
    ),
  )}`;
  const rows = letters.map(
    (letter) => html`<tr>
${context.actionsEnabled ? html`<td><input type="checkbox" name="id" value="${letter.id}" aria-label="select"></td>` : ''}
<td><a class="mono" href="dead-letter?id=${letter.id}">${letter.id.slice(0, 8)}</a></td>
<td class="mono">${letter.sourceQueue ?? '-'}</td>
<td class="mono">${String(letter.event.type ?? '-')}</td>
<td>${typeof letter.event.subject === 'string' ? workflowLink(letter.event.subject) : '-'}</td>
<td class="num">${letter.totalAttempts ?? letter.attempts ?? '-'}</td>
<td>${time(letter.lastFailedAt ?? letter.deadLetteredAt)}</td>
<td class="error-text">${oneLine(errorText(letter), 160)}</td>
</tr>`,
  );
  const table = html`<table id="dead-letters"><thead><tr>${context.actionsEnabled ? html`<th></th>` : ''}<th>Id</th><th>Source queue</th>
<th>Event type</th><th>Subject</th><th class="num">Attempts</th><th>Last failure</th><th>Error</th></tr></thead>
<tbody>${rows}</tbody></table>`;
  return layout(
    'Dead letters',
    'dead-letters',
    context,
    html`<h1>Dead letters</h1>
<form class="filters" method="get" action="dead-letters">
<label>Source queue <input name="queue" value="${filter.queue ?? ''}"></label>
<label>Dead-letter queue <input name="dlq" value="${filter.dlq ?? ''}"></label>
<label>Show <input name="limit" type="number" min="1" max="1000" value="${filter.limit}"></label>
<button type="submit">Filter</button>
</form>
<p class="muted">${letters.length} shown, oldest first${letters.length === filter.limit ? ' (there may be more: raise the limit)' : ''}.</p>
${
  letters.length === 0
    ? html`<p>No dead letters.</p>`
    : context.actionsEnabled
      ? html`<form method="post" action="replay"><input type="hidden" name="back" value="${back}">
${table}<div class="actions">${actionButtons('selected')}</div></form>`
      : table
}`,
  );
}

export function deadLetterPage(letter: DeadLetter, context: PageContext): SafeHtml {
  const subject = typeof letter.event.subject === 'string' ? letter.event.subject : null;
  const stack = (letter.failure as { error?: { stack?: unknown } } | null)?.error?.stack;
  return layout(
    'Dead letter',
    'dead-letters',
    context,
    html`<h1>Dead letter <code>${letter.id}</code></h1>
<dl class="fields">
<dt>Event</dt><dd class="mono">${String(letter.event.type ?? '-')} · ${String(letter.event.id ?? '-')}</dd>
<dt>Subject</dt><dd>${subject ? workflowLink(subject) : '-'}</dd>
<dt>Trace</dt><dd>${traceLink(letter.event.traceparent, context)}</dd>
<dt>Source queue</dt><dd class="mono">${letter.sourceQueue ?? '-'}</dd>
<dt>Dead-letter queue</dt><dd class="mono">${letter.deadLetterQueue}</dd>
<dt>Attempts</dt><dd>${letter.attempts ?? '-'} in the last round, ${letter.totalAttempts ?? '-'} in all</dd>
<dt>Dead-lettered</dt><dd>${time(letter.deadLetteredAt)}</dd>
<dt>Error</dt><dd class="error-text">${errorText(letter)}</dd>
</dl>
${
  context.actionsEnabled
    ? html`<form method="post" action="replay" class="actions"><input type="hidden" name="id" value="${letter.id}">
<input type="hidden" name="back" value="dead-letters">${actionButtons('this dead letter')}</form>`
    : ''
}
${typeof stack === 'string' ? html`<h2>Stack</h2><pre>${redactSecrets(stack)}</pre>` : ''}
<h2>Earlier failures (${letter.history.length})</h2>
${
  letter.history.length === 0
    ? html`<p class="muted">None.</p>`
    : html`<table><thead><tr><th>Failed</th><th>Queue</th><th class="num">Attempt</th><th>Kind</th><th>Error</th></tr></thead><tbody>
${letter.history.map(
  (entry) => html`<tr><td>${time(new Date(entry.failedAt))}</td><td class="mono">${entry.queue}</td>
<td class="num">${entry.attempt}</td><td>${entry.kind}</td>
<td class="error-text">${redactSecrets(`${entry.error.name}: ${entry.error.message}`)}</td></tr>`,
)}</tbody></table>`
}
<h2>Event</h2>
${json(letter.event)}`,
  );
}

function recordRow(record: WorkflowRecordSummary): SafeHtml {
  return html`<tr><td>${workflowLink(record.subject)}</td><td class="mono">${record.orchestrator ?? '-'}</td>
<td>${statusBadge(record.status)}</td><td class="num">${record.version}</td>
<td>${time(record.createdAt)}</td><td>${time(record.updatedAt)}</td></tr>`;
}

export function workflowsPage(
  page: WorkflowPage,
  statuses: string[],
  filter: WorkflowFilter,
  context: PageContext,
): SafeHtml {
  const query = (extra: Record<string, string | undefined>) =>
    new URLSearchParams(
      Object.entries({
        status: filter.status,
        orchestrator: filter.orchestrator,
        q: filter.search,
        root: filter.root,
        ...extra,
      }).filter((entry): entry is [string, string] => Boolean(entry[1])),
    ).toString();
  const option = (value: string, selected: string | undefined) =>
    html`<option value="${value}"${value === selected ? html` selected` : ''}>${value}</option>`;
  // Orchestrators of this page as suggestions: listing all distinct ones would scan every record.
  const orchestrators = [...new Set(page.records.map((record) => record.orchestrator ?? ''))].filter(Boolean);
  return layout(
    'Workflows',
    'workflows',
    context,
    html`<h1>Workflows</h1>
<form class="filters" method="get" action="workflows">
<label>Subject or event id <input name="q" size="48" value="${filter.search ?? ''}"></label>
<label>Status <select name="status"><option value="">any</option>${statuses.map((status) => option(status, filter.status))}</select></label>
<label>Orchestrator <input name="orchestrator" list="orchestrators" size="28" value="${filter.orchestrator ?? ''}"></label>
<label>Tree of root <input name="root" size="48" value="${filter.root ?? ''}"></label>
<datalist id="orchestrators">${orchestrators.map((name) => html`<option value="${name}">`)}</datalist>
<button type="submit">Filter</button>
</form>
${
  page.records.length === 0
    ? html`<p>No workflow matches.</p>`
    : html`<table id="workflows"><thead><tr><th>Subject</th><th>Orchestrator</th><th>Status</th><th class="num">Version</th>
<th>Created</th><th>Updated</th></tr></thead><tbody>${page.records.map(recordRow)}</tbody></table>`
}
<p class="pager">${filter.cursor ? html`<a href="workflows?${query({})}">First page</a> ` : ''}${
      page.next ? html`<a id="next-page" href="workflows?${query({ after: page.next })}">Next page →</a>` : ''
    }</p>`,
  );
}

function treeList(records: WorkflowRecordSummary[], parent: string | null, current: string): SafeHtml {
  const children = records.filter((record) =>
    parent === null
      ? record.parentSubject === null || !records.some((r) => r.subject === record.parentSubject)
      : record.parentSubject === parent,
  );
  if (children.length === 0) return html``;
  return html`<ul class="tree${parent === null ? ' top' : ''}">${children.map(
    (
      record,
    ) => html`<li>${record.subject === current ? html`<strong class="subject mono">${record.subject}</strong>` : workflowLink(record.subject)}
<span class="muted mono">${record.orchestrator ?? ''}</span> ${statusBadge(record.status)}
${treeList(records, record.subject, current)}</li>`,
  )}</ul>`;
}

function timelineRow(entry: WorkflowTimelineEntry, context: PageContext): SafeHtml {
  return html`<tr><td>${time(entry.at)}</td><td>${entry.kind}</td><td class="subject mono">${entry.subject}</td>
<td class="mono">${entry.eventType ?? ''}${entry.eventId ? html`<br><span class="muted">${entry.eventId}</span>` : ''}</td>
<td>${entry.summary}${entry.error ? html`<br><span class="error-text">${redactSecrets(entry.error)}</span>` : ''}</td>
<td>${traceLink(entry.traceparent, context)}</td></tr>`;
}

export function workflowPage(detail: WorkflowDetail, context: PageContext): SafeHtml {
  const { record } = detail;
  return layout(
    'Workflow',
    'workflows',
    context,
    html`<h1>Workflow</h1>
<dl class="fields">
<dt>Subject</dt><dd class="mono" id="subject">${record.subject}</dd>
<dt>Status</dt><dd>${statusBadge(record.status)} <span class="muted">execution ${record.executionStatus ?? '-'}</span></dd>
<dt>Orchestrator</dt><dd class="mono">${record.orchestrator ?? '-'}</dd>
<dt>Initiator</dt><dd class="mono">${record.initiator ?? '-'}</dd>
<dt>Parent</dt><dd>${record.parentSubject ? workflowLink(record.parentSubject) : '-'}</dd>
<dt>Root</dt><dd>${record.rootSubject === record.subject ? html`<span class="muted">this workflow</span>` : workflowLink(record.rootSubject)}
<a id="whole-tree" href="workflows?root=${encodeURIComponent(record.rootSubject)}">all records of the tree</a></dd>
<dt>Version</dt><dd>${record.version}</dd>
<dt>Created</dt><dd>${time(record.createdAt)}</dd>
<dt>Updated</dt><dd>${time(record.updatedAt)}</dd>
</dl>
<h2>Tree (${detail.tree.length})</h2>
${treeList(detail.tree, null, record.subject)}
<h2>Dead letters (${detail.deadLetters.length})</h2>
${
  detail.deadLetters.length === 0
    ? html`<p class="muted">None.</p>`
    : html`<table id="workflow-dead-letters"><thead><tr><th>Id</th><th>Event</th><th>Subject</th><th>Dead-lettered</th><th>Error</th><th>Trace</th></tr></thead><tbody>
${detail.deadLetters.map(
  (
    letter,
  ) => html`<tr><td><a class="mono" href="dead-letter?id=${letter.id}">${letter.id.slice(0, 8)}</a></td>
<td class="mono">${String(letter.event.type ?? '-')}<br><span class="muted">${String(letter.event.id ?? '')}</span></td>
<td class="subject mono">${String(letter.event.subject ?? '-')}</td>
<td>${time(letter.deadLetteredAt)}</td><td class="error-text">${oneLine(errorText(letter), 200)}</td>
<td>${traceLink(letter.event.traceparent, context)}</td></tr>`,
)}</tbody></table>`
}
<h2>Timeline of the tree</h2>
<table id="timeline"><thead><tr><th>When</th><th>What</th><th>Subject</th><th>Event</th><th>Detail</th><th>Trace</th></tr></thead>
<tbody>${detail.timeline.map((entry) => timelineRow(entry, context))}</tbody></table>
<h2>Current state</h2>
${json(detail.data)}`,
  );
}

export function messagePage(title: string, message: string, context: PageContext): SafeHtml {
  return layout(title, null, context, html`<h1>${title}</h1><p class="problem">${message}</p>`);
}
