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
 * Where a workflow's past is read from (`getWorkflow`, the dashboard's option `history`). The default
 * is the event history table ({@link historyTimeline}), with {@link recordTimeline} for a tree it
 * holds nothing of.
 */
export interface WorkflowHistorySource {
  /** The timeline of a tree, oldest first, at most `limit` entries. */
  timeline(tree: WorkflowTree, limit: number): Promise<WorkflowTimelineEntry[]>;
  /**
   * Subjects of the workflows that handled `eventId`, then the roots of their trees (for search, and
   * for `getWorkflow` when a subject has no record), at most a few.
   */
  subjectsOfEvent(eventId: string): Promise<string[]>;
}

/** A filter of {@link Workflows.listWorkflows}; every field optional but `limit`. */
export interface WorkflowFilter {
  status?: string;
  orchestrator?: string;
  /** Only records last written before this time. */
  updatedBefore?: Date;
  /** Only records last written at or after this time. */
  updatedAfter?: Date;
  /** A subject or an event id. */
  search?: string;
  /** Only the records of the tree of this root subject (the root's record among them). */
  root?: string;
  /** From a previous page's `next`. */
  cursor?: string;
  limit: number;
}

/** One page of workflow records, most recently written first. */
export interface WorkflowPage {
  records: WorkflowRecordSummary[];
  /** Cursor of the next page, or null on the last one. */
  next: string | null;
}

/** One workflow: its record, its tree, its dead letters and the timeline across the tree. */
export interface WorkflowDetail {
  record: WorkflowRecordSummary;
  /** The record as stored, redacted. */
  data: unknown;
  /** The record's parent, when it is a child workflow. */
  parent: WorkflowRecordSummary | null;
  /** The records whose parent it is. */
  children: WorkflowRecordSummary[];
  /** Every record of the tree, oldest first. */
  tree: WorkflowRecordSummary[];
  deadLetters: DeadLetter[];
  timeline: WorkflowTimelineEntry[];
}
