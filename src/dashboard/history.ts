import type { DeadLetter } from '../broker/dead-letters';

/** One workflow record as the dashboard shows it (the state table's columns, without the record). */
export interface WorkflowRecordSummary {
  subject: string;
  parentSubject: string | null;
  rootSubject: string;
  status: string | null;
  executionStatus: string | null;
  orchestrator: string | null;
  initiator: string | null;
  source: string | null;
  version: string;
  createdAt: Date;
  updatedAt: Date;
}

/** A workflow tree: its records (root first) and the dead letters of its subjects. */
export interface WorkflowTree {
  rootSubject: string;
  records: WorkflowRecordSummary[];
  deadLetters: DeadLetter[];
}

/** One line of a workflow's timeline. */
export interface WorkflowTimelineEntry {
  at: Date;
  subject: string;
  /** What happened, one word or two: `created`, `last written`, `failed`, `dead-lettered`, `handled`, ... */
  kind: string;
  /** A short description (untrusted text: the dashboard escapes it). */
  summary: string;
  eventId?: string | null;
  eventType?: string | null;
  /** W3C `traceparent` of the event, linked to the trace when the dashboard has a `traceUrl`. */
  traceparent?: string | null;
  /** Redacted error text. */
  error?: string | null;
}

/**
 * Where the dashboard reads a workflow's past from. The default, {@link recordTimeline}, knows only
 * what the state table and the dead letters keep; an event history table plugs in here (option
 * `history` of `createDashboard`) without any change to the pages.
 */
export interface WorkflowHistorySource {
  /** The timeline of a tree, oldest first, at most `limit` entries. */
  timeline(tree: WorkflowTree, limit: number): Promise<WorkflowTimelineEntry[]>;
  /** Subjects of the workflows that handled or produced `eventId` (for search), at most a few. */
  subjectsOfEvent(eventId: string): Promise<string[]>;
}

/**
 * The timeline without an event history: when each record was created and last written, and every
 * failure the tree's dead letters carry (earlier attempts and replays from `history`, then the last
 * one). `subjectsOfEvent` is given by the caller (it looks in pg-boss's retained jobs).
 */
export function recordTimeline(
  subjectsOfEvent: (eventId: string) => Promise<string[]>,
): WorkflowHistorySource {
  return {
    subjectsOfEvent,
    async timeline(tree, limit) {
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
    },
  };
}
