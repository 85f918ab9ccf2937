import type pg from 'pg';
import { InvalidOptionError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { AGE_RANGE_MS, expectKnownKeys, expectObject, integerOption, numberOption } from '../shared/options';
import { type ErrorDescription, redactValue } from '../shared/redact';
import { isUuid } from './event-codec';
import { deadLetterQueuesOption, queueNameOption } from './options';
import type { FailureKind } from './policy';
import { deadLettersSql, purgeDeadLettersSql, replayDeadLettersSql } from './sql';

/** One failed attempt, as the broker records it. */
export interface FailureHistoryEntry {
  kind: FailureKind;
  queue: string;
  /** 1 for the first attempt of the job that failed (a replayed job starts again at 1). */
  attempt: number;
  eventId: string | null;
  eventType: string | null;
  error: ErrorDescription;
  /** ISO 8601. */
  failedAt: string;
}

/**
 * What a failed or dead-lettered job carries as its output (pg-boss `output` / DLQ `sourceOutput`):
 * the last failure, and in `history` the failures before it, oldest first — earlier attempts of the
 * same job (retries) and, after a replay, every attempt of the rounds before it. Bounded to the last
 * {@link MAX_FAILURE_HISTORY} entries.
 */
export interface JobFailureRecord extends FailureHistoryEntry {
  history?: FailureHistoryEntry[];
}

/** How many earlier failures a record keeps (the oldest are dropped first). */
export const MAX_FAILURE_HISTORY = 25;

function isFailureRecord(value: unknown): value is JobFailureRecord {
  const record = value as Partial<JobFailureRecord> | null;
  return (
    typeof record === 'object' &&
    record !== null &&
    typeof record.kind === 'string' &&
    typeof record.failedAt === 'string' &&
    typeof record.error === 'object'
  );
}

/**
 * The `history` of a new failure record, from the output the job carried when it was fetched: the
 * previous attempt's failure record after a retry, or the dead letter's record after a replay
 * (replay copies it into the new job's `output`). Empty for a first failure.
 */
export function failureHistory(previousOutput: unknown): FailureHistoryEntry[] {
  if (!isFailureRecord(previousOutput)) return [];
  const { history, ...previous } = previousOutput;
  return [...(Array.isArray(history) ? history : []), previous].slice(-MAX_FAILURE_HISTORY);
}

/** A job waiting in a dead-letter queue. */
export interface DeadLetter {
  /** Id of the copy in the dead-letter queue (pass it to `replay`, `purge`, `show`). */
  id: string;
  deadLetterQueue: string;
  /** The queue the event failed on. */
  sourceQueue: string | null;
  /** Id of the failed job in its source queue. */
  sourceJobId: string | null;
  /** Attempts made in the last round (since it was dispatched or last replayed). */
  attempts: number | null;
  /** Attempts over all rounds: the recorded history plus the last failure. */
  totalAttempts: number | null;
  /** The last error (redacted; without stack — see `failure.error` for it). */
  error: Omit<ErrorDescription, 'stack'> | null;
  /** The last failure as stored (normally a {@link JobFailureRecord}; redacted). */
  failure: JobFailureRecord | Record<string, unknown> | null;
  /** Earlier failures, oldest first (`failure.history`). */
  history: FailureHistoryEntry[];
  /** When the first recorded failure happened. */
  firstFailedAt: Date | null;
  /** When the last failure happened. */
  lastFailedAt: Date | null;
  /** The event as stored (`toJSON()` form). */
  event: Record<string, unknown>;
  deadLetteredAt: Date;
}

/** Which dead letters to list. */
export interface DeadLetterFilter {
  /** Only this dead-letter queue. Default: every dead-letter queue (the broker's methods default to its `deadLetterQueue`). */
  queue?: string;
  /** Only those that failed on this queue. */
  sourceQueue?: string;
  /** Most to return. Default 100. */
  limit?: number;
}

/** Which dead letters to replay: `ids`, or `all: true` (within `queue` / `sourceQueue`). */
export interface DeadLetterReplay {
  ids?: string[];
  all?: boolean;
  queue?: string;
  sourceQueue?: string;
  /** Most to replay in one call. Default 1000. */
  limit?: number;
}

/** Which dead letters to purge: `ids`, and/or those dead-lettered more than `olderThanMs` ago. */
export interface DeadLetterPurge {
  ids?: string[];
  olderThanMs?: number;
  queue?: string;
  sourceQueue?: string;
}

/** One replayed dead letter. */
export interface ReplayedDeadLetter {
  /** The dead letter's id (now deleted). */
  deadLetterId: string;
  /** The new job on the source queue. */
  jobId: string;
  queue: string;
}

/** Options of {@link DeadLetters}. */
export interface DeadLettersOptions {
  /** A pool on the broker's database, or a client in a transaction of yours (never closed here). */
  pool: pg.Pool | pg.ClientBase;
  /** pg-boss's schema. Default `pgboss`. */
  schema?: string;
  /**
   * Queues to treat as dead-letter queues even before any queue names them (a broker passes its
   * `deadLetterQueue`); see {@link deadLetterQueuesOption}. A function is called at each operation
   * (a broker passes the dead-letter queues it has created so far). Default `['arvo.dead-letter']`.
   */
  deadLetterQueues?: string[] | (() => string[]);
}

/** Validated dead-letter ids (UUIDs, lower-cased as PostgreSQL returns them), or null when not given. */
function idsOption(value: unknown, option: string): string[] | null {
  if (value === undefined) return null;
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidOptionError(option, 'expected a non-empty array of dead-letter ids');
  }
  for (const [index, id] of value.entries()) {
    if (!isUuid(id)) {
      throw new InvalidOptionError(`${option}[${index}]`, `${JSON.stringify(id)} is not a job id (a UUID)`);
    }
  }
  return (value as string[]).map((id) => id.toLowerCase());
}

function optionalQueue(value: unknown, option: string): string | null {
  return value === undefined ? null : queueNameOption(value, option);
}

function toDate(value: unknown): Date | null {
  if (typeof value !== 'string') return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

interface DeadLetterRow {
  id: string;
  name: string;
  data: Record<string, unknown>;
  source_name: string | null;
  source_id: string | null;
  source_retry_count: number | null;
  source_output: unknown;
  created_on: Date;
}

function toDeadLetter(row: DeadLetterRow): DeadLetter {
  // Stored redacted already; redacted again on the way out in case a record predates that.
  const failure = redactValue(row.source_output ?? null) as DeadLetter['failure'];
  const record = isFailureRecord(failure) ? failure : null;
  const history = record && Array.isArray(record.history) ? record.history : [];
  const error = record ? { ...record.error } : null;
  if (error) delete error.stack;
  return {
    id: row.id,
    deadLetterQueue: row.name,
    sourceQueue: row.source_name,
    sourceJobId: row.source_id,
    attempts: row.source_retry_count === null ? null : row.source_retry_count + 1,
    totalAttempts: record ? history.length + 1 : null,
    error,
    failure,
    history,
    firstFailedAt: toDate(history[0]?.failedAt ?? record?.failedAt),
    lastFailedAt: toDate(record?.failedAt),
    event: row.data,
    deadLetteredAt: row.created_on,
  };
}

/**
 * Dead letters of a database: list, show, replay to their source queues, purge. Serves the broker
 * (`broker.deadLetters`) and the CLI, which has only a connection. Works on every dead-letter queue
 * of the database (any queue some queue names as its `deadLetter`) unless narrowed by `queue`.
 *
 * **Replay keeps the failure history**: the replayed job carries the dead letter's failure record
 * as its `output`, the broker adds it to `history` of the next failure record, so an event that
 * fails again comes back to the dead-letter queue with every earlier failure in `failure.history`.
 */
export class DeadLetters {
  readonly #pool: pg.Pool | pg.ClientBase;
  readonly #schema: string;
  readonly #namedQueues: () => string[];

  constructor(options: DeadLettersOptions) {
    const given = expectObject(options, 'options');
    expectKnownKeys(given, ['pool', 'schema', 'deadLetterQueues'], 'options');
    if (typeof options.pool?.query !== 'function') {
      throw new InvalidOptionError('pool', 'expected a pg.Pool');
    }
    this.#pool = options.pool;
    this.#schema = validateIdentifier(options.schema ?? 'pgboss', 'schema');
    const named = options.deadLetterQueues;
    if (typeof named === 'function') {
      this.#namedQueues = () => deadLetterQueuesOption(named(), 'deadLetterQueues()');
    } else {
      const fixed = deadLetterQueuesOption(named);
      this.#namedQueues = () => fixed;
    }
  }

  /** The parameters `$1`-`$5` of a dead-letter selection (see `DEAD_LETTER_SELECTION` in sql.ts). */
  #selection(given: Record<string, unknown>, ids: string[] | null, olderThanMs: number | null): unknown[] {
    return [
      this.#namedQueues(),
      optionalQueue(given.queue, 'queue'),
      optionalQueue(given.sourceQueue, 'sourceQueue'),
      ids,
      olderThanMs,
    ];
  }

  /** Dead letters waiting in dead-letter queues, oldest first. */
  async list(filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
    const given = expectObject(filter, 'filter');
    expectKnownKeys(given, ['queue', 'sourceQueue', 'limit'], 'filter');
    const { rows } = await this.#pool.query<DeadLetterRow>(deadLettersSql(this.#schema), [
      ...this.#selection(given, null, null),
      integerOption(given.limit, 'limit', { min: 1, max: 100_000 }, 100),
    ]);
    return rows.map(toDeadLetter);
  }

  /** One dead letter, or `null` when no dead-letter queue holds `id`. */
  async show(id: string): Promise<DeadLetter | null> {
    const [checked] = idsOption([id], 'id') as [string];
    const { rows } = await this.#pool.query<DeadLetterRow>(deadLettersSql(this.#schema), [
      this.#namedQueues(),
      null,
      null,
      [checked],
      null,
      1,
    ]);
    return rows[0] ? toDeadLetter(rows[0]) : null;
  }

  /**
   * Moves dead letters back to the queues they failed on, in one transaction: new job id, the
   * source queue's current retry budget, the failure record kept as history. Returns what was moved.
   */
  async replay(selection: DeadLetterReplay): Promise<ReplayedDeadLetter[]> {
    const given = expectObject(selection, 'selection');
    expectKnownKeys(given, ['ids', 'all', 'queue', 'sourceQueue', 'limit'], 'selection');
    const ids = idsOption(given.ids, 'ids');
    if ((ids === null) === (given.all !== true)) {
      throw new InvalidOptionError('ids', 'give either `ids` or `all: true` (not both)');
    }
    const { rows } = await this.#pool.query(replayDeadLettersSql(this.#schema), [
      ...this.#selection(given, ids, null),
      integerOption(given.limit, 'limit', { min: 1, max: 100_000 }, 1000),
    ]);
    return rows.map((row) => ({ deadLetterId: row.dead_letter_id, jobId: row.job_id, queue: row.queue }));
  }

  /** Deletes dead letters by id and/or age; returns the ids deleted. */
  async purge(selection: DeadLetterPurge): Promise<string[]> {
    const given = expectObject(selection, 'selection');
    expectKnownKeys(given, ['ids', 'olderThanMs', 'queue', 'sourceQueue'], 'selection');
    const ids = idsOption(given.ids, 'ids');
    const olderThanMs =
      given.olderThanMs === undefined
        ? undefined
        : numberOption(given.olderThanMs, 'olderThanMs', AGE_RANGE_MS, 0);
    if (ids === null && olderThanMs === undefined) {
      throw new InvalidOptionError(
        'ids',
        'give `ids` and/or `olderThanMs` (purging everything needs `olderThanMs: 0`)',
      );
    }
    const { rows } = await this.#pool.query(
      purgeDeadLettersSql(this.#schema),
      this.#selection(given, ids, olderThanMs ?? null),
    );
    return rows.map((row) => row.id as string);
  }
}
