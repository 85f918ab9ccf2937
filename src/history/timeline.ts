import type pg from 'pg';
import type { HistoryStatements } from './sql';
import type { WorkflowHistorySource, WorkflowTimelineEntry, WorkflowTree } from './types';

/** A row of the history table as `HistoryStatements.timeline` returns it. */
interface HistoryRow {
  subject: string;
  event_id: string;
  event_type: string | null;
  queue: string;
  attempt: number;
  outcome: string;
  started_at: Date;
  duration_ms: number;
  error: { name?: string; message?: string; kind?: string } | null;
  produced: string[] | null;
  traceparent: string | null;
}

/**
 * The timeline from the event history table: one entry per settled attempt of every row with the
 * tree's root (also of subjects without a record: an init that failed before its first write); for a
 * tree it holds nothing of (history off, or older than it) the {@link recordTimeline}.
 */
export function historyTimeline(pool: pg.Pool, statements: HistoryStatements): WorkflowHistorySource {
  return {
    async subjectsOfEvent(eventId) {
      const { rows } = await pool.query<{ subject: string; root_subject: string | null }>(
        statements.subjectsOfEvent,
        [eventId],
      );
      const roots = rows.map((row) => row.root_subject).filter((root): root is string => root !== null);
      return [...new Set([...rows.map((row) => row.subject), ...roots])];
    },
    async timeline(tree, limit) {
      const { rows } = await pool.query<HistoryRow>(statements.timeline, [tree.rootSubject, limit]);
      if (rows.length === 0) return recordTimeline(tree, limit);
      return rows.map((row) => ({
        at: row.started_at,
        subject: row.subject,
        kind: row.outcome,
        summary: `${row.queue}, attempt ${row.attempt}, ${row.duration_ms} ms${row.produced?.length ? `, produced ${row.produced.join(', ')}` : ''}`,
        eventId: row.event_id,
        eventType: row.event_type,
        traceparent: row.traceparent,
        error: row.error ? `${row.error.name ?? 'Error'}: ${row.error.message ?? ''}` : null,
      }));
    },
  };
}

/**
 * The timeline without an event history: when each record was created and last written, and every
 * failure the tree's dead letters carry (earlier attempts and replays from `history`, then the last
 * one), oldest first, at most `limit` entries.
 */
export function recordTimeline(tree: WorkflowTree, limit: number): WorkflowTimelineEntry[] {
  const entries: WorkflowTimelineEntry[] = [];
  for (const record of tree.records) {
    entries.push({
      at: record.createdAt,
      subject: record.subject,
      kind: 'created',
      summary: 'record created',
    });
    if (record.updatedAt.getTime() !== record.createdAt.getTime()) {
      entries.push({
        at: record.updatedAt,
        subject: record.subject,
        kind: 'last written',
        summary: `version ${record.version}, status ${record.status ?? '-'}`,
      });
    }
  }
  for (const letter of tree.deadLetters) {
    const event = letter.event as { id?: string; type?: string; subject?: string; traceparent?: string };
    const common = {
      subject: String(event.subject ?? ''),
      eventId: event.id ?? null,
      eventType: event.type ?? null,
      traceparent: event.traceparent ?? null,
    };
    for (const failure of letter.history) {
      entries.push({
        ...common,
        at: new Date(failure.failedAt),
        kind: 'failed',
        summary: `${failure.kind} on ${failure.queue}, attempt ${failure.attempt}`,
        error: `${failure.error.name}: ${failure.error.message}`,
      });
    }
    entries.push({
      ...common,
      at: letter.lastFailedAt ?? letter.deadLetteredAt,
      kind: 'dead-lettered',
      summary: `to ${letter.deadLetterQueue} from ${letter.sourceQueue ?? '-'} after ${letter.attempts ?? '-'} attempts`,
      error: letter.error ? `${letter.error.name}: ${letter.error.message}` : null,
    });
  }
  entries.sort((a, b) => a.at.getTime() - b.at.getTime());
  return entries.slice(-limit);
}
