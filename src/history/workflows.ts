import type pg from 'pg';
import { type DeadLetter, DeadLetters } from '../broker/dead-letters';
import { isUuid } from '../broker/event-codec';
import { redactValue } from '../shared/redact';
import { type HistoryStatements, historyStatements, type WorkflowTables } from './sql';
import { historyTimeline } from './timeline';
import type {
  WorkflowDetail,
  WorkflowFilter,
  WorkflowHistorySource,
  WorkflowPage,
  WorkflowRecordSummary,
} from './types';

/** Records of one tree, dead letters of one workflow, and timeline entries one workflow shows. */
const TREE_LIMIT = 200;
const WORKFLOW_DEAD_LETTER_LIMIT = 50;
const TIMELINE_LIMIT = 500;

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

/**
 * Reading workflows: a filtered, keyset-paged list of records, and one workflow with its tree, its
 * dead letters and the timeline across the tree (the CLI's `workflows list/show`, the dashboard).
 * Only reads: a role with SELECT rights uses it.
 */
export class Workflows {
  readonly #pool: pg.Pool;
  readonly #sql: HistoryStatements;
  readonly #deadLetters: DeadLetters;
  readonly #deadLetterQueues: string[];
  readonly #history: WorkflowHistorySource;

  /** `history` replaces the event history table as the source of timelines and event-id search. */
  constructor(
    pool: pg.Pool,
    tables: WorkflowTables & { deadLetterQueues: string[] },
    history?: WorkflowHistorySource | null,
  ) {
    this.#pool = pool;
    this.#sql = historyStatements(tables);
    this.#deadLetters = new DeadLetters({
      pool,
      schema: tables.pgBossSchema,
      deadLetterQueues: tables.deadLetterQueues,
    });
    this.#deadLetterQueues = tables.deadLetterQueues;
    this.#history = history ?? historyTimeline(pool, this.#sql);
  }

  /**
   * Records matching `filter`, most recently written first; `search` is a subject or an event id (its
   * workflow and that tree's root), `root` a root subject (the whole tree).
   */
  async listWorkflows(filter: WorkflowFilter): Promise<WorkflowPage> {
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
      filter.updatedBefore ?? null,
      filter.updatedAfter ?? null,
      cursorTime,
      cursorSubject,
      filter.limit + 1,
      filter.root ?? null,
    ]);
    const more = rows.length > filter.limit;
    const page = rows.slice(0, filter.limit);
    return { records: page.map(toRecord), next: more && page.length > 0 ? encodeCursor(page.at(-1)!) : null };
  }

  /**
   * The workflow of `subjectOrEventId` (a record's subject, or the id of an event in its history: the
   * record of the event's subject, else of its tree's root) with its tree, its dead letters and the
   * timeline of every history row with the tree's root; null when there is none.
   */
  async getWorkflow(subjectOrEventId: string): Promise<WorkflowDetail | null> {
    const candidates = [subjectOrEventId];
    if (isUuid(subjectOrEventId)) candidates.push(...(await this.#history.subjectsOfEvent(subjectOrEventId)));
    for (const subject of candidates) {
      const { rows } = await this.#pool.query<RecordRow & { data: unknown }>(this.#sql.workflow, [subject]);
      if (rows[0]) return this.#detail(rows[0]);
    }
    return null;
  }

  async #detail(row: RecordRow & { data: unknown }): Promise<WorkflowDetail> {
    const { rows } = await this.#pool.query<RecordRow>(this.#sql.tree, [row.root_subject, TREE_LIMIT]);
    const tree = rows.map(toRecord);
    const deadLetters = await this.#deadLettersOf(tree.map((record) => record.subject));
    const timeline = await this.#history.timeline(
      { rootSubject: row.root_subject, records: tree, deadLetters },
      TIMELINE_LIMIT,
    );
    return {
      record: toRecord(row),
      data: redactValue(row.data),
      parent: tree.find((record) => record.subject === row.parent_subject) ?? null,
      children: tree.filter((record) => record.parentSubject === row.subject),
      tree,
      deadLetters,
      timeline,
    };
  }

  async #deadLettersOf(subjects: string[]): Promise<DeadLetter[]> {
    const { rows } = await this.#pool.query<{ id: string }>(this.#sql.deadLettersOfSubjects, [
      this.#deadLetterQueues,
      subjects,
      WORKFLOW_DEAD_LETTER_LIMIT,
    ]);
    const letters = await Promise.all(rows.map((row) => this.#deadLetters.show(row.id)));
    return letters.filter((letter): letter is DeadLetter => letter !== null);
  }
}
