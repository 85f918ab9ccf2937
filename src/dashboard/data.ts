import type pg from 'pg';
import { type DeadLetter, type DeadLetterFilter, DeadLetters } from '../broker/dead-letters';
import { isUuid } from '../broker/event-codec';
import { type BrokerQueueStats, queryQueueStats } from '../broker/stats';
import { redactValue } from '../shared/redact';
import type { WorkflowHistorySource, WorkflowRecordSummary, WorkflowTimelineEntry } from './history';
import { recordTimeline } from './history';
import type { DashboardSettings } from './options';
import { type DashboardStatements, dashboardStatements } from './sql';

/** pg-boss's own queues (`__pgboss__send-it`, ...), left out of the queue page. */
const INTERNAL_QUEUE_PREFIX = '__pgboss__';
/** Minutes of throughput the queue page shows. */
export const THROUGHPUT_MINUTES = 10;
/** Records of one tree, dead letters of one workflow, and timeline entries the workflow page shows. */
const TREE_LIMIT = 200;
const WORKFLOW_DEAD_LETTER_LIMIT = 50;
const TIMELINE_LIMIT = 500;

/** One queue with its finished jobs per minute, index 0 = the current minute. */
export interface QueueOverview extends BrokerQueueStats {
  finishedPerMinute: number[];
}

export interface WorkflowFilter {
  status?: string;
  orchestrator?: string;
  /** A subject or an event id. */
  search?: string;
  /** From a previous page's `next`. */
  cursor?: string;
  limit: number;
}

export interface WorkflowPage {
  records: WorkflowRecordSummary[];
  /** Cursor of the next page, or null on the last one. */
  next: string | null;
}

export interface WorkflowDetail {
  record: WorkflowRecordSummary;
  /** The record as stored, redacted. */
  data: unknown;
  tree: WorkflowRecordSummary[];
  deadLetters: DeadLetter[];
  timeline: WorkflowTimelineEntry[];
}

interface RecordRow {
  subject: string;
  parent_subject: string | null;
  root_subject: string;
  status: string | null;
  execution_status: string | null;
  orchestrator: string | null;
  initiator: string | null;
  source: string | null;
  version: string;
  created_at: Date;
  updated_at: Date;
  updated_cursor: string;
}

function toRecord(row: RecordRow): WorkflowRecordSummary {
  return {
    subject: row.subject,
    parentSubject: row.parent_subject,
    rootSubject: row.root_subject,
    status: row.status,
    executionStatus: row.execution_status,
    orchestrator: row.orchestrator,
    initiator: row.initiator,
    source: row.source,
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Keyset cursor: the last row's exact `updated_at` (as PostgreSQL prints it) and subject. */
function encodeCursor(row: RecordRow): string {
  return Buffer.from(JSON.stringify([row.updated_cursor, row.subject])).toString('base64url');
}

function decodeCursor(cursor: string | undefined): [string, string] | [null, null] {
  if (!cursor) return [null, null];
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && value.every((part) => typeof part === 'string')) {
      return value as [string, string];
    }
  } catch {}
  return [null, null];
}

/** Everything the pages read, and the two actions, on one pool. */
export class DashboardData {
  readonly deadLetters: DeadLetters;
  readonly #pool: pg.Pool;
  readonly #settings: DashboardSettings;
  readonly #sql: DashboardStatements;
  readonly #history: WorkflowHistorySource;

  constructor(pool: pg.Pool, settings: DashboardSettings) {
    this.#pool = pool;
    this.#settings = settings;
    this.#sql = dashboardStatements(settings);
    this.deadLetters = new DeadLetters({
      pool,
      schema: settings.pgBossSchema,
      deadLetterQueues: settings.deadLetterQueues,
    });
    this.#history = settings.history ?? recordTimeline((eventId) => this.#subjectsOfRetainedEvent(eventId));
  }

  async queues(): Promise<QueueOverview[]> {
    // Two independent statements, side by side: the page costs the slower one, not the sum.
    const [all, throughput] = await Promise.all([
      queryQueueStats(this.#pool, this.#settings.pgBossSchema, [], true, this.#settings.deadLetterQueues),
      this.#pool.query<{ name: string; minutes_ago: number; finished: number }>(this.#sql.throughput, [
        THROUGHPUT_MINUTES,
      ]),
    ]);
    return all
      .filter((queue) => !queue.name.startsWith(INTERNAL_QUEUE_PREFIX))
      .map((queue) => {
        const finishedPerMinute = new Array<number>(THROUGHPUT_MINUTES).fill(0);
        for (const row of throughput.rows) {
          if (row.name === queue.name && row.minutes_ago < THROUGHPUT_MINUTES)
            finishedPerMinute[row.minutes_ago] = row.finished;
        }
        return { ...queue, finishedPerMinute };
      });
  }

  async statuses(): Promise<string[]> {
    const { rows } = await this.#pool.query<{ status: string }>(this.#sql.statuses);
    return rows.map((row) => row.status);
  }

  async workflows(filter: WorkflowFilter): Promise<WorkflowPage> {
    let subjects: string[] | null = null;
    if (filter.search) {
      subjects = [filter.search];
      if (isUuid(filter.search)) subjects.push(...(await this.#history.subjectsOfEvent(filter.search)));
    }
    const [cursorTime, cursorSubject] = decodeCursor(filter.cursor);
    const { rows } = await this.#pool.query<RecordRow>(this.#sql.workflows, [
      filter.status ?? null,
      filter.orchestrator ?? null,
      subjects,
      cursorTime,
      cursorSubject,
      filter.limit + 1,
    ]);
    const more = rows.length > filter.limit;
    const page = rows.slice(0, filter.limit);
    return { records: page.map(toRecord), next: more && page.length > 0 ? encodeCursor(page.at(-1)!) : null };
  }

  /** One workflow with its tree, dead letters and timeline; null when no record has `subject`. */
  async workflow(subject: string): Promise<WorkflowDetail | null> {
    const { rows } = await this.#pool.query<RecordRow & { data: unknown }>(this.#sql.workflow, [subject]);
    const row = rows[0];
    if (!row) return null;
    const tree = (await this.#pool.query<RecordRow>(this.#sql.tree, [row.root_subject, TREE_LIMIT])).rows.map(
      toRecord,
    );
    const deadLetters = await this.#deadLettersOf(tree.map((record) => record.subject));
    const timeline = await this.#history.timeline(
      { rootSubject: row.root_subject, records: tree, deadLetters },
      TIMELINE_LIMIT,
    );
    return { record: toRecord(row), data: redactValue(row.data), tree, deadLetters, timeline };
  }

  listDeadLetters(filter: DeadLetterFilter): Promise<DeadLetter[]> {
    return this.deadLetters.list(filter);
  }

  async #deadLettersOf(subjects: string[]): Promise<DeadLetter[]> {
    const { rows } = await this.#pool.query<{ id: string }>(this.#sql.deadLettersOfSubjects, [
      this.#settings.deadLetterQueues,
      subjects,
      WORKFLOW_DEAD_LETTER_LIMIT,
    ]);
    const letters = await Promise.all(rows.map((row) => this.deadLetters.show(row.id)));
    return letters.filter((letter): letter is DeadLetter => letter !== null);
  }

  async #subjectsOfRetainedEvent(eventId: string): Promise<string[]> {
    const { rows } = await this.#pool.query<{ subject: string }>(this.#sql.subjectsOfEvent, [eventId]);
    return rows.map((row) => row.subject);
  }
}
