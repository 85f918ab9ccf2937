import type pg from 'pg';
import { historyTableColumns, migrateHistoryTable } from '../history/schema';
import { historyInsertStatement, historySweepStatement, type NamedStatement } from '../history/sql';
import { ArvoPostgresError } from '../shared/errors';
import { type ErrorDescription, redactValue } from '../shared/redact';
import { tableStructureProblems } from '../shared/table-structure';
import type { StoredEvent } from './event-codec';
import { JobTransaction } from './job-transaction';
import type { FetchedJob } from './pgboss';
import type { ResolvedBrokerOptions, ResolvedHistoryOptions } from './types';

/** Entries one sweep statement deletes at most. */
const SWEEP_BATCH_SIZE = 1000;

/** How one attempt of an event ended, as the history records it. */
export type HistoryOutcome = 'handled' | 'failed' | 'dead-lettered' | 'rescheduled' | 'expired';

/** What a history row says about the event it belongs to (the stored event's fields). */
type EventFields = Partial<Pick<StoredEvent, 'id' | 'type' | 'source' | 'subject' | 'to' | 'data'>> & {
  traceparent?: string | null;
};

/**
 * The parent subject an orchestrator's init event names in `data.parentSubject$$` (see
 * docs/arvo.md), from which the insert derives the row's root; null for any other event.
 */
function parentSubjectOf(data: unknown): string | null {
  const parent = (data as Record<string, unknown> | null | undefined)?.parentSubject$$;
  return typeof data === 'object' && typeof parent === 'string' && parent !== '' ? parent : null;
}

/** The job an entry is about. */
type HistoryJob = Pick<FetchedJob, 'name' | 'retryCount' | 'startedOn' | 'id'> & { data?: unknown };

/** What an entry says beyond the job: the event, the ids it produced, the redacted failure. */
interface HistoryDetails {
  event?: EventFields | null;
  produced?: string[];
  error?: ErrorDescription & { kind?: string };
}

/** One history row, as the insert statement takes it (JSON). */
export type HistoryEntry = Record<string, unknown>;

/** Something the history's insert runs on: the job's transaction, or a client in a transaction. */
interface Statements {
  query(statement: { name: string; text: string }, values: unknown[]): Promise<unknown>;
}

/**
 * The broker's writer of the event history (`src/history`): one row per settled attempt, inserted
 * through the transaction that settles the attempt, so the history says exactly what was committed.
 * A no-op when the `history` option is `false`.
 */
export class HistoryRecorder {
  readonly #options: ResolvedHistoryOptions | null;
  readonly #insert: NamedStatement | null;

  constructor(options: ResolvedHistoryOptions | null) {
    this.#options = options;
    this.#insert = options ? historyInsertStatement(options.schema, options.table) : null;
  }

  /**
   * The broker's recorder, with the history table created or migrated (when on and `migrate` is), or
   * checked (with `migrate: false`): an insert into a missing table or column would fail every settle.
   */
  static async start(pool: pg.Pool, options: ResolvedBrokerOptions): Promise<HistoryRecorder> {
    const history = options.history;
    if (history && options.migrate) await migrateHistoryTable(pool, history.schema, history.table);
    else if (history) {
      const problems = await tableStructureProblems(pool, history.schema, [
        historyTableColumns(history.table),
      ]);
      if (problems.length > 0) {
        throw new ArvoPostgresError(
          'MIGRATION_MISSING',
          `The event history table is not as this version writes it (${problems.join('; ')}): start a broker with migrate: true once, run \`arvo-postgres migrate\`, apply memoryMigrationSql() as an administrator, or set history: false`,
        );
      }
    }
    return new HistoryRecorder(history);
  }

  /**
   * Records that `job` ended with `outcome`, through `db` (a transaction that settles the job):
   * `produced` are the ids of the events it emitted, `error` the redacted failure.
   */
  async record(
    db: Statements,
    job: HistoryJob,
    outcome: HistoryOutcome,
    details: HistoryDetails = {},
  ): Promise<void> {
    const entry = this.entry(job, outcome, details);
    if (entry) await this.insert(db, [entry]);
  }

  /** The row {@link record} would insert (`null` when the history is off), for {@link insert} later. */
  entry(job: HistoryJob, outcome: HistoryOutcome, details: HistoryDetails = {}): HistoryEntry | null {
    if (!this.#options) return null;
    const event = (details.event ?? job.data ?? {}) as EventFields;
    const ended = new Date();
    const started = job.startedOn instanceof Date ? job.startedOn : ended;
    const error = details.error
      ? {
          name: details.error.name,
          message: details.error.message,
          code: details.error.code,
          kind: details.error.kind,
        }
      : null;
    return {
      subject: typeof event.subject === 'string' ? event.subject : '',
      parent_subject: parentSubjectOf(event.data),
      event_id: typeof event.id === 'string' ? event.id : job.id,
      event_type: event.type ?? null,
      source: event.source ?? null,
      destination: event.to ?? null,
      queue: job.name,
      attempt: job.retryCount + 1,
      outcome,
      started_at: started.toISOString(),
      ended_at: ended.toISOString(),
      duration_ms: Math.max(0, ended.getTime() - started.getTime()),
      error,
      produced: details.produced ?? [],
      traceparent: event.traceparent ?? null,
      payload: this.#options.payloads ? this.#payload(event.data) : null,
    };
  }

  /** Inserts `entries` (from {@link entry}) in one statement through `db`; none, no statement. */
  async insert(db: Statements, entries: HistoryEntry[]): Promise<void> {
    if (!this.#insert || entries.length === 0) return;
    await db.query(this.#insert, [JSON.stringify(entries)]);
  }

  /**
   * Runs `settle` (a single fenced statement) together with `record`'s insert in one transaction on
   * `pool` when the history is on; alone, on its own connection, when it is off.
   */
  async settleWith(
    pool: pg.Pool,
    record: (db: Statements) => Promise<void>,
    settle: (db?: JobTransaction) => Promise<void>,
  ): Promise<void> {
    if (!this.#options) return settle();
    // A JobTransaction for its handling of a connection lost mid-way; it is no ambient transaction
    // (nothing joins it), so it needs no database id.
    const transaction = new JobTransaction(pool, '');
    try {
      await record(transaction);
      await settle(transaction);
      await transaction.commit();
    } catch (error) {
      await transaction.rollback();
      throw error;
    }
  }

  /**
   * Deletes entries older than `history.maxAgeSeconds`, a batch at a time: the cap for workflows that
   * never finish (and events of no workflow); finished trees go with their records. Returns how many.
   */
  async sweep(pool: pg.Pool): Promise<number> {
    if (!this.#options) return 0;
    const statement = historySweepStatement(this.#options.schema, this.#options.table);
    let deleted = 0;
    for (;;) {
      const { rowCount } = await pool.query(statement, [this.#options.maxAgeSeconds, SWEEP_BATCH_SIZE]);
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < SWEEP_BATCH_SIZE) return deleted;
    }
  }

  /** The event's data, redacted, or a note of its size when over `maxPayloadBytes`. */
  #payload(data: unknown): unknown {
    if (data === undefined) return null;
    const text = JSON.stringify(redactValue(data));
    const bytes = Buffer.byteLength(text, 'utf8');
    return bytes > this.#options!.maxPayloadBytes
      ? { omitted: 'over history.maxPayloadBytes', bytes }
      : JSON.parse(text);
  }
}
