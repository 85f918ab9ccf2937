import { createHash } from 'node:crypto';
import type pg from 'pg';
import {
  type Db,
  getConstructionPlans,
  type JobInsert,
  type JobResult,
  type JobWithMetadata,
  PgBoss,
} from 'pg-boss';
// pg-boss dispatches a queue's NOTIFY in its manager (not public API either): see fetch-wake.ts.
import * as pgBossManager from 'pg-boss/dist/manager.js';
// pg-boss's own `deadletter` job result settles only after the whole batch; the broker dead-letters a
// job as soon as its handler fails, with pg-boss's statement for it (not public API: the version is pinned).
import { completeJobsWithOutputs, deadLetterJobsByIdWithOutputs } from 'pg-boss/dist/plans.js';
import { quoteIdentifier, validateIdentifier } from '../shared/identifiers';
import { type Logger, writeLog } from '../shared/logger';
import { describeError, redactSecrets, redactValue } from '../shared/redact';
import type { Queryable } from '../shared/transaction';
import type { JobFailureRecord } from './dead-letters';
import { databaseUnavailable, isConnectionFailure, pgBossError } from './errors';
import type { StoredEvent } from './event-codec';
import { type FetchWake, wakeOneLoopPerNotification } from './fetch-wake';
import { OUT_OF_REACH_RETENTION_SECONDS } from './sql';
import type { ResolvedBrokerOptions, ResolvedWorkerOptions } from './types';

/**
 * The broker's one seam to pg-boss: every call into it (and its one internal statement) goes
 * through here. Settles are fenced to the attempt that was fetched and checked in one place
 * ({@link assertClaimed}): a claim lost to `expireInSeconds` or `stop()` throws.
 */

export type { JobInsert, JobResult, PgBoss };

/** A job as pg-boss hands it to a worker, with the stored event as its data. */
export type FetchedJob = JobWithMetadata<StoredEvent>;

/** pg-boss queue settings (stored on its queue row). */
export type QueueSettings = Record<string, unknown>;

/** Settings fixed when pg-boss creates a queue. */
export interface FixedQueueSettings {
  policy?: string;
  partition?: boolean;
}

/**
 * `$1` queue, `$2` JSON `[{ id, retry_count, output }]`: fails those attempts of the queue's jobs
 * terminally, with `output` as the failure, and copies each to its queue's dead-letter queue, in one
 * statement: pg-boss 12.38's own statement behind the `perJobResults` `deadletter` disposition, fenced
 * to attempts still active. Run on the root `job` table (it routes rows to a partitioned queue's
 * table). Returns `count`, the attempts settled. See docs/design.md, "Dead-lettering at once".
 */
export function deadLetterAttemptsSql(schema: string): string {
  return deadLetterJobsByIdWithOutputs(quoteIdentifier(schema), 'job');
}

/** Dead-letters `attempts` of `queue` at once (see {@link deadLetterAttemptsSql}); returns how many were settled. */
export async function deadLetterAttempts(
  db: Queryable,
  schema: string,
  queue: string,
  attempts: Array<{ id: string; retry_count: number; output: JobFailureRecord }>,
): Promise<number> {
  const { rows } = await db.query(deadLetterAttemptsSql(schema), [queue, JSON.stringify(attempts)]);
  return Number(rows[0]?.count);
}

/** Throws unless exactly the fetched attempt was settled (`affected`, the rows a fenced settle changed). */
function assertClaimed(job: FetchedJob, affected: unknown, consequence: string): void {
  if (affected !== 1) {
    throw new Error(`job ${job.id} is no longer claimed by this worker (expired or stopped); ${consequence}`);
  }
}

function affectedRows(response: unknown): unknown {
  return (response as { affected?: number }).affected;
}

/** A connection, pool or job transaction that prepares a `{ name, text }` statement once per connection. */
export interface PreparingDb {
  query(statement: { name: string; text: string }, values?: unknown[]): Promise<{ rows: any[] }>;
}

const statementNames = new Map<string, string>();

/**
 * pg-boss's statement `text` named after its hash, so each connection plans it once (pg-boss sends
 * its SQL unnamed: PostgreSQL would plan every insert and settle again). The texts are few: pg-boss
 * passes every value as a parameter.
 */
function preparedStatement(text: string): { name: string; text: string } {
  let name = statementNames.get(text);
  if (!name) {
    name = `pgboss_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return { name, text };
}

/** `db` as a pg-boss `Db` (statements sent as they are). */
function plainDb(db: Queryable): Db {
  return { executeSql: (text, values) => db.query(text, values) };
}

/** `db` as a pg-boss `Db` whose statements are prepared (see {@link preparedStatement}). */
function preparedDb(db: PreparingDb): Db {
  return { executeSql: (text, values) => db.query(preparedStatement(text), values) };
}

type ExecuteSql = (text: string, values?: unknown[], options?: unknown) => Promise<unknown>;

/**
 * Whether `text` is pg-boss's per-job completion of a worker's batch on schema `schema`
 * (`completeJobsWithOutputs`: not public API, the version is pinned), for any queue table.
 */
function perJobCompletionMatcher(schema: string): (text: string) => boolean {
  const [before, after] = completeJobsWithOutputs(schema, '\u0000').split('\u0000') as [string, string];
  return (text) =>
    text.length > before.length + after.length &&
    text.startsWith(before) &&
    text.endsWith(after) &&
    /^\w+$/.test(text.slice(before.length, text.length - after.length));
}

/**
 * Makes pg-boss's per-job completion after a worker's batch skip the attempts in `settled`, which the
 * broker settled itself (fenced, in the job's transaction or its failure settle): the statement would
 * change none of them. A batch whose attempts are all in `settled` sends no statement at all; its
 * result is the one PostgreSQL would give, nothing settled. Each attempt is looked up once.
 */
function skipSettledCompletions(boss: PgBoss, schema: string, settled: Set<string>): void {
  const db = boss.getDb() as unknown as { executeSql: ExecuteSql };
  const execute: ExecuteSql = db.executeSql.bind(db);
  const isPerJobCompletion = perJobCompletionMatcher(schema);
  db.executeSql = (text, values, options) => {
    if (!isPerJobCompletion(text) || typeof values?.[1] !== 'string') return execute(text, values, options);
    const attempts = (JSON.parse(values[1]) as Array<{ id: string; retry_count: number }>).map(
      ({ id, retry_count }) => attemptKey(id, retry_count),
    );
    const unsettled = attempts.filter((attempt) => !settled.has(attempt));
    for (const attempt of attempts) settled.delete(attempt);
    if (unsettled.length === 0) return Promise.resolve({ rows: [{ count: 0, ids: [] }] });
    return execute(text, values, options);
  };
}

function attemptKey(id: string, retryCount: number): string {
  return `${id}:${retryCount}`;
}

export class PgBossClient {
  readonly #boss: PgBoss;
  readonly #pool: pg.Pool;
  readonly #schema: string;
  /** Attempts the broker settled itself, until pg-boss's per-job completion of their batch (see {@link skipSettledCompletions}). */
  readonly #settledByBroker = new Set<string>();
  readonly #fetchWake: FetchWake;

  /** pg-boss on a pool of its own (see `pgBossConnection`); `pool` is the broker's, for dead-lettering. */
  constructor(options: ResolvedBrokerOptions, pool: pg.Pool, logger: () => Logger) {
    this.#pool = pool;
    this.#schema = options.schema;
    this.#boss = new PgBoss({
      ...pgBossConnection(options, pool),
      schema: options.schema,
      useListenNotify: true,
      supervise: true,
      migrate: options.migrate,
      maintenanceIntervalSeconds: options.maintenanceIntervalSeconds,
      // The retention sweep runs inside the supervise pass, so that pass must be at least as frequent.
      superviseIntervalSeconds: Math.min(60, options.maintenanceIntervalSeconds),
      // Jobs of a crashed worker are only failed (and retried) by the monitor pass after their
      // expireInSeconds; pg-boss runs it once a minute by default, so keep it as frequent as supervise.
      monitorIntervalSeconds: Math.min(60, options.maintenanceIntervalSeconds),
      openTelemetry: { enabled: false },
      ...(options.instanceName ? { instanceName: options.instanceName } : {}),
    });
    skipSettledCompletions(this.#boss, options.schema, this.#settledByBroker);
    this.#fetchWake = wakeOneLoopPerNotification(this.#boss, pgBossManager.default);
    // Without an `error` listener Node throws on emit('error') and the process dies.
    this.#boss.on('error', (emitted) => {
      // pg-boss emits worker errors as plain copies (`{ ...error, message, stack, queue, worker }`).
      const { error, context } = pgBossError(emitted);
      const description = describeError(error);
      writeLog(logger(), 'error', `arvo-postgres broker: pg-boss error: ${description.message}`, {
        error: description,
        ...context,
      });
    });
    this.#boss.on('warning', (warning) =>
      writeLog(logger(), 'warn', `arvo-postgres broker: ${redactSecrets(String(warning?.message))}`, {
        data: redactValue(warning?.data),
      }),
    );
  }

  /** Installs/migrates pg-boss's schema and starts its maintenance. */
  async start(): Promise<void> {
    try {
      await this.#boss.start();
    } catch (error) {
      throw isConnectionFailure(error) ? databaseUnavailable('start pg-boss', error) : error;
    }
  }

  /** createQueue is ON CONFLICT DO NOTHING, so changed settings are applied with updateQueue. */
  async upsertQueue(name: string, settings: QueueSettings, fixed: FixedQueueSettings = {}): Promise<void> {
    const creation = Object.fromEntries(
      Object.entries({ ...settings, ...fixed }).filter(([, value]) => value !== null),
    );
    await this.#boss.createQueue(name, creation);
    await this.#boss.updateQueue(name, settings);
  }

  /**
   * Starts a worker taking batches of `queue`'s jobs, one result per job; returns its id. `handle`
   * returns `completed` only for a job it settled itself (completed, rescheduled, failed or
   * dead-lettered by the broker): pg-boss's completion of those is skipped.
   */
  work(
    queue: string,
    worker: ResolvedWorkerOptions,
    subjectConcurrency: number,
    handle: (jobs: FetchedJob[]) => Promise<JobResult[]>,
  ): Promise<string> {
    return this.#boss.work<StoredEvent>(
      queue,
      {
        batchSize: worker.batchSize,
        localConcurrency: worker.localConcurrency,
        pollingIntervalSeconds: worker.pollingIntervalSeconds,
        notifyPollingIntervalSeconds: worker.notifyPollingIntervalSeconds,
        // A full batch means more work is waiting: fetch again at once instead of sleeping.
        burstWhenBatchFull: worker.batchSize > 1,
        includeMetadata: true,
        perJobResults: true,
        ...(subjectConcurrency > 0 ? { groupConcurrency: subjectConcurrency } : {}),
      },
      async (jobs) => {
        this.#fetchWake.fetched(queue, jobs.length, worker.batchSize);
        const results = await handle(jobs as FetchedJob[]);
        const byId = new Map(jobs.map((job) => [job.id, job]));
        for (const { id, status } of results) {
          const job = byId.get(id);
          if (job && status === 'completed') this.#settledByBroker.add(attemptKey(id, job.retryCount));
        }
        return results;
      },
    );
  }

  /**
   * pg-boss's own pool (its `Db`'s `pool`: not public API, the version is pinned), for statements
   * outside a job's transaction: they never wait for a connection of the broker's pool.
   */
  get #ownPool(): PreparingDb {
    return (this.#boss.getDb() as unknown as { pool: pg.Pool }).pool;
  }

  /** Inserts `jobs` into `queue` in one prepared statement, through `db` (a job's transaction) when given. */
  async insert(queue: string, jobs: JobInsert[], db: PreparingDb = this.#ownPool): Promise<void> {
    await this.#boss.insert(queue, jobs, { db: preparedDb(db) });
  }

  /**
   * Completes this attempt of `job` in one prepared statement, through `db` (a job's transaction)
   * when given; throws when it is no longer claimed.
   */
  async complete(
    job: FetchedJob,
    output: object | null,
    consequence: string,
    db: PreparingDb = this.#ownPool,
  ): Promise<void> {
    const attempt = { id: job.id, retryCount: job.retryCount };
    const response = await this.#boss.complete(job.name, attempt, output, { db: preparedDb(db) });
    assertClaimed(job, affectedRows(response), consequence);
  }

  /**
   * Completes these attempts of `queue`'s jobs in one prepared statement, through `db` (a batch's
   * transaction) when given; returns the ids of those it settled (the others are no longer claimed:
   * expired or stopped).
   */
  async completeAttempts(
    queue: string,
    jobs: FetchedJob[],
    db: PreparingDb = this.#ownPool,
  ): Promise<Set<string>> {
    const attempts = jobs.map((job) => ({ id: job.id, retryCount: job.retryCount }));
    const response = await this.#boss.complete(queue, attempts, null, { db: preparedDb(db) });
    return new Set((response as { settled?: string[] }).settled ?? []);
  }

  /**
   * Fails this attempt of `job` with `record` as its output, in one fenced statement (through `db`
   * when given): pg-boss retries
   * it with the queue's backoff, or at the last attempt moves a copy to the dead-letter queue.
   */
  async fail(job: FetchedJob, record: JobFailureRecord, db: PreparingDb = this.#ownPool): Promise<void> {
    const attempt = { id: job.id, retryCount: job.retryCount };
    const response = await this.#boss.fail(job.name, attempt, record, { db: preparedDb(db) });
    assertClaimed(job, affectedRows(response) ?? 0, 'not failed');
  }

  /** Fails this attempt of `job` terminally and moves a copy to its dead-letter queue at once (through `db` when given). */
  async deadLetter(job: FetchedJob, record: JobFailureRecord, db: Queryable = this.#pool): Promise<void> {
    const attempts = [{ id: job.id, retry_count: job.retryCount, output: record }];
    assertClaimed(job, await deadLetterAttempts(db, this.#schema, job.name, attempts), 'not failed');
  }

  /**
   * Creates or replaces pg-boss's schedule `(queue, key)`: each tick of `cron` in `tz` (pg-boss's cron
   * pass, claimed by one process at a time, filed once per minute slot) sends one job with `data` to
   * `queue`, its `keep_until` out of reach like every job the broker inserts. Through `db` when given.
   */
  async schedule(
    queue: string,
    key: string,
    cron: string,
    tz: string,
    data: object,
    db?: Queryable,
  ): Promise<void> {
    const options = { tz, key, retentionSeconds: OUT_OF_REACH_RETENTION_SECONDS };
    await this.#boss.schedule(queue, cron, data, db ? { ...options, db: plainDb(db) } : options);
  }

  /** Removes pg-boss's schedule `(queue, key)` (nothing when there is none), through `db` when given. */
  async unschedule(queue: string, key: string, db?: Queryable): Promise<void> {
    await this.#boss.unschedule(queue, key, db ? { db: plainDb(db) } : {});
  }

  /** Stops this process's workers of `queue` from fetching; the jobs they hold finish as usual. */
  async offWork(queue: string): Promise<void> {
    await this.#boss.offWork(queue, { wait: false });
  }

  /** This process's workers: queue, state and when each last fetched (epoch ms). */
  workers(): Array<{ name: string; state: string; lastFetchedOn: number | null }> {
    return this.#boss.getWipData().map(({ name, state, lastFetchedOn }) => ({
      name,
      state,
      lastFetchedOn: lastFetchedOn ?? null,
    }));
  }

  /** Wakes this process's fetch loop of worker `workerId`. */
  notifyWorker(workerId: string): void {
    this.#boss.notifyWorker(workerId);
  }

  stop(options: { graceful: boolean; timeout?: number; close: boolean }): Promise<void> {
    return this.#boss.stop(options);
  }
}

/** A pg-boss that never connects: its cron evaluation is pure (see {@link nextScheduleRun}). */
let offlineBoss: PgBoss | undefined;

/**
 * The next tick of `cron` in time zone `tz` after now (this process's clock), evaluated exactly as
 * pg-boss's cron pass will; throws pg-boss's error for an expression or zone it refuses.
 */
export function nextScheduleRun(cron: string, tz: string): Date | null {
  offlineBoss ??= new PgBoss({
    db: { executeSql: () => Promise.reject(new Error('offline: cron evaluation only')) },
    schedule: false,
    supervise: false,
    migrate: false,
  });
  return offlineBoss.previewSchedule(cron, { tz, count: 1 })[0] ?? null;
}

/**
 * The DDL pg-boss 12.38 runs to install its schema (default `pgboss`), for an administrator to apply when
 * the application runs with `migrate: false` (SECURITY.md), and for `migrate --print-sql`. Users get it
 * here, at the pinned version, rather than importing pg-boss themselves.
 */
export function pgBossSchemaSql(options: { schema?: string } = {}): string {
  return getConstructionPlans(validateIdentifier(options.schema ?? 'pgboss', 'schema'));
}

/**
 * Runs `fn` with a started pg-boss on `schema` that runs no workers, supervision or schedules (the CLI).
 * `migrate: true` installs or migrates pg-boss's schema; `false` makes `start()` throw when the
 * schema is missing ("pg-boss is not installed") or at another version ("requires migrations").
 */
export async function withPgBoss<T>(
  connectionString: string,
  schema: string,
  migrate: boolean,
  fn: (boss: PgBoss) => Promise<T>,
): Promise<T> {
  const boss = new PgBoss({
    connectionString,
    schema,
    migrate,
    supervise: false,
    schedule: false,
    max: 2,
    application_name: 'arvo-postgres-cli',
  });
  let failure: unknown;
  // Without an `error` listener Node throws on emit('error'); remember it for the caller instead.
  boss.on('error', (error) => {
    failure ??= error;
  });
  try {
    await boss.start();
    const result = await fn(boss);
    if (failure) throw failure;
    return result;
  } finally {
    await boss.stop({ graceful: false, close: true }).catch(() => {});
  }
}

/**
 * Connection settings for pg-boss's own pool. pg-boss needs a pool of its own: LISTEN/NOTIFY only
 * works with a pool it creates (a `db` adapter would have to reimplement its listener), so with an
 * external `pool` the same connection parameters (and timeouts) are reused for a small second pool.
 * The handlers' transactions always run on the broker's pool (shared with the memory when the same
 * pool is given).
 */
function pgBossConnection(options: ResolvedBrokerOptions, pool: pg.Pool): Record<string, unknown> {
  const source = (options.connection.config ??
    (pool as unknown as { options: pg.PoolConfig }).options) as pg.PoolConfig;
  const { connectionString, host, port, user, password, database, ssl } = source;
  // The timeouts too: a statement of pg-boss (an insert, a fetch) waiting on a lock must give up
  // after `statementTimeoutMillis` like every other statement of the library.
  const { connectionTimeoutMillis, statement_timeout } = source;
  const given = {
    connectionString,
    host,
    port,
    user,
    password,
    database,
    ssl,
    connectionTimeoutMillis,
    statement_timeout,
  };
  const config: Record<string, unknown> = Object.fromEntries(
    Object.entries(given).filter(([, value]) => value !== undefined),
  );
  config.max = options.pgBossPoolMax;
  config.application_name = `${source.application_name ?? 'arvo-postgres'}-pgboss`.slice(0, 63);
  return config;
}
