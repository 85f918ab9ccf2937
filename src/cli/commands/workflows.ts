import { DEFAULT_DEAD_LETTER_QUEUE } from '../../broker/options';
import type { WorkflowDetail, WorkflowPage } from '../../history/types';
import { Workflows } from '../../history/workflows';
import { FINISHED_STATUSES } from '../../memory/sql';
import {
  connectionStringOf,
  defineCommand,
  EXIT,
  formatAge,
  JSON_OPTION,
  parseCount,
  parseDuration,
  table,
  UsageError,
  withPool,
} from '../common';
import { oneLine, shortTime } from '../output';
import { stuckWorkflowsSql, tableExistsSql, workflowCountsSql } from '../sql';

export const workflowsCommand = defineCommand({
  name: 'workflows',
  summary: 'workflow counts, stuck workflows; list workflows; show one with its tree and timeline',
  usage: `Usage:
  arvo-postgres workflows [--stuck-older-than <duration>] [--limit n] [--json]
  arvo-postgres workflows list [--status s] [--orchestrator o] [--updated-before t] [--updated-after t]
                               [--search <subject|event id>] [--root <subject>] [--limit n] [--cursor c]
                               [--json]
  arvo-postgres workflows show <subject|event id> [--json]

Without a subcommand: counts of the machine memory's workflow records by orchestrator and status.
With --stuck-older-than, also lists the workflows that are not finished (status not one of
${FINISHED_STATUSES.join(', ')}, and no failure record) and were not written for longer than the duration (e.g. 1h).

  list    records, most recently written first, a page at a time (the next page: --cursor as printed)
  show    one workflow: its record, its tree (parent, children), its dead letters, and the timeline of
          every handled, failed, dead-lettered, rescheduled or expired event of the tree (the event
          history's rows with the tree's root subject)

  --stuck-older-than <d>  list unfinished workflows idle longer than d (30s, 15m, 1h, 7d)
  --status, --orchestrator  list: only records with this status / orchestrator
  --updated-before/after <t>  list: written before / at or after t (an ISO time, or a duration ago: 1h)
  --search <s>            list: the record with this subject, or of the workflow an event id belongs to
                          (and its tree's root)
  --root <subject>        list: every record of the tree with this root subject
  --limit <n>             at most n stuck workflows (default 100), list: n records (default 50)
  --json                  print JSON

Exit codes: 0 done (and no stuck workflow); 1 stuck workflows found, no such workflow, or the table is
missing; 2 usage.`,
  options: {
    'stuck-older-than': { type: 'string' },
    limit: { type: 'string' },
    ...JSON_OPTION,
    status: { type: 'string' },
    orchestrator: { type: 'string' },
    'updated-before': { type: 'string' },
    'updated-after': { type: 'string' },
    search: { type: 'string' },
    root: { type: 'string' },
    cursor: { type: 'string' },
  },
  positionals: true,
  async run({ values, names, positionals, report }, io) {
    const [subcommand, ...rest] = positionals;
    if (subcommand === 'list' || subcommand === 'show') {
      if (rest.length !== (subcommand === 'show' ? 1 : 0)) {
        throw new UsageError(
          subcommand === 'show' ? 'show expects one subject or event id' : 'list takes no argument',
        );
      }
      const url = connectionStringOf(values, io);
      return withPool(url, async (pool) => {
        const workflows = new Workflows(pool, { ...names, deadLetterQueues: [DEFAULT_DEAD_LETTER_QUEUE] });
        if (subcommand === 'show') {
          const detail = await workflows.getWorkflow(rest[0]!);
          if (!detail) {
            io.stderr(`no workflow with subject or event id ${JSON.stringify(rest[0])}\n`);
            return EXIT.problem;
          }
          report(detail, renderDetail);
          return EXIT.ok;
        }
        const page = await workflows.listWorkflows({
          status: values.status,
          orchestrator: values.orchestrator,
          updatedBefore: parseTime(values['updated-before'], '--updated-before'),
          updatedAfter: parseTime(values['updated-after'], '--updated-after'),
          search: values.search,
          root: values.root,
          cursor: values.cursor,
          limit: parseCount(values.limit, '--limit', 50),
        });
        report(page, renderPage);
        return EXIT.ok;
      });
    }
    if (subcommand !== undefined) throw new UsageError(`unknown subcommand ${JSON.stringify(subcommand)}`);

    const stuckAfter = values['stuck-older-than'];
    const stuckMs = stuckAfter === undefined ? null : parseDuration(stuckAfter, '--stuck-older-than');
    const limit = parseCount(values.limit, '--limit', 100);
    const url = connectionStringOf(values, io);
    return withPool(url, async (pool) => {
      const { rows: exists } = await pool.query(tableExistsSql, [names.schema, names.stateTable]);
      if (!exists[0]?.exists) {
        io.stderr(
          `table ${names.schema}.${names.stateTable} does not exist (create it with: arvo-postgres migrate)\n`,
        );
        return EXIT.problem;
      }
      const { rows: counts } = await pool.query(workflowCountsSql(names.schema, names.stateTable));
      const stuck =
        stuckMs === null
          ? null
          : (await pool.query(stuckWorkflowsSql(names.schema, names.stateTable), [stuckMs, limit])).rows;
      report(
        {
          counts: counts.map((row) => ({
            orchestrator: row.orchestrator,
            status: row.status,
            count: row.count,
            oldestUpdate: row.oldest_update,
          })),
          ...(stuck
            ? {
                stuck: stuck.map((row) => ({
                  subject: row.subject,
                  orchestrator: row.orchestrator,
                  status: row.status,
                  updatedAt: row.updated_at,
                  idleMs: row.idle_ms,
                })),
              }
            : {}),
        },
        () =>
          (counts.length === 0
            ? 'no workflows\n'
            : table(
                ['ORCHESTRATOR', 'STATUS', 'COUNT', 'OLDEST UPDATE'],
                counts.map((row) => [
                  row.orchestrator,
                  row.status,
                  row.count,
                  row.oldest_update.toISOString(),
                ]),
              )) +
          (stuck === null
            ? ''
            : stuck.length === 0
              ? `\nno unfinished workflow idle longer than ${stuckAfter}\n`
              : `\n${stuck.length} unfinished workflow${stuck.length === 1 ? '' : 's'} idle longer than ${stuckAfter}:\n${table(
                  ['SUBJECT', 'ORCHESTRATOR', 'STATUS', 'IDLE'],
                  stuck.map((row) => [
                    row.subject,
                    row.orchestrator ?? '-',
                    row.status ?? '-',
                    formatAge(row.idle_ms),
                  ]),
                )}`),
      );
      return stuck && stuck.length > 0 ? EXIT.problem : EXIT.ok;
    });
  },
});

/** An ISO time, or a duration (`1h`) meaning that long ago; undefined when not given. */
function parseTime(text: string | undefined, flag: string): Date | undefined {
  if (text === undefined) return undefined;
  if (/^\d+(?:\.\d+)?(ms|s|m|h|d|w)$/.test(text.trim()))
    return new Date(Date.now() - parseDuration(text, flag));
  const time = Date.parse(text);
  if (Number.isNaN(time))
    throw new UsageError(`${flag}: expected an ISO time or a duration like 1h, got ${JSON.stringify(text)}`);
  return new Date(time);
}

function renderPage(page: WorkflowPage): string {
  if (page.records.length === 0) return 'no workflows\n';
  const rows = table(
    ['SUBJECT', 'ORCHESTRATOR', 'STATUS', 'UPDATED'],
    page.records.map((record) => [
      record.subject,
      record.orchestrator ?? '-',
      record.status ?? '-',
      shortTime(record.updatedAt),
    ]),
  );
  return page.next ? `${rows}\nnext page: --cursor ${page.next}\n` : rows;
}

function renderDetail(detail: WorkflowDetail): string {
  const { record } = detail;
  const lines = [
    `subject:       ${record.subject}`,
    `orchestrator:  ${record.orchestrator ?? '-'}`,
    `status:        ${record.status ?? '-'} (version ${record.version}, updated ${shortTime(record.updatedAt)})`,
    `parent:        ${detail.parent?.subject ?? record.parentSubject ?? '-'}`,
    `root:          ${record.rootSubject}`,
    '',
    `tree (${detail.tree.length} records):`,
  ];
  const childrenOf = (subject: string | null) =>
    detail.tree.filter((entry) => entry.parentSubject === subject && entry.subject !== subject);
  const walk = (subject: string, depth: number) => {
    const entry = detail.tree.find((candidate) => candidate.subject === subject);
    if (!entry) return;
    const mark = entry.subject === record.subject ? '  <' : '';
    lines.push(
      `${'  '.repeat(depth + 1)}${entry.subject}  ${entry.orchestrator ?? '-'}  ${entry.status ?? '-'}${mark}`,
    );
    for (const child of childrenOf(entry.subject)) walk(child.subject, depth + 1);
  };
  walk(record.rootSubject, 0);
  lines.push('', `dead letters (${detail.deadLetters.length}):`);
  for (const letter of detail.deadLetters) {
    const error = letter.error ? `${letter.error.name}: ${letter.error.message}` : '-';
    lines.push(`  ${letter.id}  ${letter.sourceQueue ?? '-'}  ${oneLine(error, 100)}`);
  }
  lines.push('', `timeline (${detail.timeline.length} entries):`);
  lines.push(
    table(
      ['AT', 'SUBJECT', 'WHAT', 'EVENT', 'DETAIL'],
      detail.timeline.map((entry) => [
        shortTime(entry.at),
        entry.subject,
        entry.kind,
        entry.eventType ? `${entry.eventType} ${entry.eventId ?? ''}` : '-',
        oneLine(entry.error ? `${entry.summary}; ${entry.error}` : entry.summary, 120),
      ]),
    ).trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}
