import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ArvoPostgresError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { type Logger, loggerOption, writeLog } from '../shared/logger';
import { applyMigrations, type MigrationComponent } from '../shared/migrations';
import {
  booleanOption,
  expectKnownKeys,
  expectObject,
  integerOption,
  MAX_TIMER_MS,
  type NumericRange,
  numericOptions,
  requireText,
  stringOption,
} from '../shared/options';
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import {
  CONNECTION_OPTION_KEYS,
  type ConnectionOptions,
  closePool,
  type ManagedPool,
  openPool,
  resolveConnection,
} from '../shared/pool';
import { describeError, redactError } from '../shared/redact';
import { runOperation } from '../shared/telemetry';
import { lockMigrationV1 } from './migrations/v1';
import { type LockStatements, lockStatements } from './sql';

/** A lock this process holds. Pass it back to `release`/`renew`; it is worthless once the TTL passed. */
export interface LockHandle {
  key: string;
  /** Random token of this acquisition: only its holder can release or renew the lock. */
  owner: string;
  /**
   * Grows with every acquisition of the key (and across keys). Pass it to the resource you protect
   * and reject writes carrying a smaller token: a holder whose lock expired cannot overwrite the work
   * of the one that took over.
   */
  fencingToken: bigint;
  /** When the lock expires, by the database clock. */
  expiresAt: Date;
}

/** Retry and TTL settings for acquiring a lock. */
export interface LockRetryOptions {
  /** Lock lifetime in ms; a holder that crashes blocks others at most this long. Default 30000. */
  ttlMs?: number;
  /** Attempts in total (1 = no retry). Default 5. */
  maxAttempts?: number;
  /** Wait before the second attempt, in ms. Default 50. */
  initialDelayMs?: number;
  /** Each further wait is the previous one times this factor. Default 2. */
  backoffExponent?: number;
  /** Upper bound of one wait, in ms. Default 2000. */
  maxDelayMs?: number;
}

/** Options of {@link PostgresLock}: how to connect plus where the table lives and the defaults. */
export interface PostgresLockOptions extends ConnectionOptions {
  /** Postgres schema of the lock table. Default `public`. */
  schema?: string;
  /** Lock table name. Default `arvo_lock`. */
  table?: string;
  /** Create the schema and table when missing (`createPostgresLock` only). Default `true`. */
  migrate?: boolean;
  /** Defaults for `acquire`, `acquireWithRetry` and `withLock`. */
  defaults?: LockRetryOptions;
  /** Delete expired rows every this many ms (`0` = never; call `sweepExpired()` yourself). Default 60000. */
  sweepIntervalMs?: number;
  /** Where warnings (failed sweeps) go. Default: console warnings and errors. */
  logger?: Logger;
  /** Create OpenTelemetry spans for lock operations. Default `false`. */
  enableOtel?: boolean;
}

/** `withLock` could not get the lock within its attempts. */
export class LockUnavailableError extends ArvoPostgresError {
  readonly key: string;
  readonly attempts: number;

  constructor(key: string, attempts: number) {
    super(
      'LOCK_UNAVAILABLE',
      `Lock ${JSON.stringify(key)} is held by another owner (gave up after ${attempts} attempts)`,
    );
    this.key = key;
    this.attempts = attempts;
  }
}

const LOCK_OPTION_KEYS = [
  ...CONNECTION_OPTION_KEYS,
  'schema',
  'table',
  'migrate',
  'defaults',
  'sweepIntervalMs',
  'logger',
  'enableOtel',
] as const;

/** Allowed values of each {@link LockRetryOptions} field. */
const RETRY_RANGES = {
  ttlMs: { min: 1, max: 86_400_000 },
  maxAttempts: { min: 1, max: 1000 },
  initialDelayMs: { min: 0, max: 600_000 },
  backoffExponent: { min: 1, max: 10, fractional: true },
  maxDelayMs: { min: 0, max: 600_000 },
} satisfies Record<keyof LockRetryOptions, NumericRange>;

/** Fully resolved {@link LockRetryOptions}. */
export type ResolvedLockRetry = Required<LockRetryOptions>;

const DEFAULT_RETRY: ResolvedLockRetry = {
  ttlMs: 30_000,
  maxAttempts: 5,
  initialDelayMs: 50,
  backoffExponent: 2,
  maxDelayMs: 2_000,
};

/** Validates retry options given at `option` (a dotted path), filling gaps from `base`. */
export function resolveLockRetry(
  value: unknown,
  option: string,
  base: ResolvedLockRetry = DEFAULT_RETRY,
): ResolvedLockRetry {
  return numericOptions(value, option, RETRY_RANGES, base);
}

/** The wait before attempt `attempt + 1` (attempt counts from 1). */
function backoffDelay(retry: ResolvedLockRetry, attempt: number): number {
  return Math.min(retry.initialDelayMs * retry.backoffExponent ** (attempt - 1), retry.maxDelayMs);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Calls `attempt` until it returns something other than `null`, at most `retry.maxAttempts` times,
 * waiting {@link backoffDelay} between calls; `null` when every attempt returned `null`.
 */
export async function retryWithBackoff<T>(
  retry: ResolvedLockRetry,
  attempt: () => Promise<T | null>,
): Promise<T | null> {
  for (let count = 1; ; count++) {
    const result = await attempt();
    if (result !== null || count >= retry.maxAttempts) return result;
    await sleep(backoffDelay(retry, count));
  }
}

/** The lock columns a statement built on `LockStatements.acquire` returns. */
export interface LockRow {
  key: string;
  owner: string;
  fencing_token: string;
  expires_at: Date;
}

/** The handle of a lock row as the lock statements return it. */
export function lockHandleFromRow(row: LockRow): LockHandle {
  return {
    key: row.key,
    owner: row.owner,
    fencingToken: BigInt(row.fencing_token),
    expiresAt: row.expires_at,
  };
}

function validKey(key: unknown): string {
  return requireText(key, 'A lock key', 'INVALID_LOCK_KEY');
}

/** `handle` as `acquire` returned it; anything else is a typed error, not a TypeError. */
function validHandle(handle: unknown): LockHandle {
  const candidate = handle as Partial<LockHandle> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.key !== 'string' ||
    typeof candidate.owner !== 'string' ||
    typeof candidate.fencingToken !== 'bigint'
  ) {
    throw new ArvoPostgresError('INVALID_LOCK_HANDLE', 'Expected a lock handle as acquire() returned it');
  }
  return candidate as LockHandle;
}

/** The lock table `table` of `schema` as the migrated component `lock:<table>`, with its layout versions. */
export function lockComponent(schema: string, table: string): MigrationComponent {
  return { component: `lock:${table}`, table, migrations: [lockMigrationV1(schema, table)] };
}

/**
 * TTL row locks in a Postgres table, with an owner per acquisition and a fencing token that only
 * grows. Every operation is a single statement on the pool: no connection is held between retries.
 */
export class PostgresLock {
  readonly schema: string;
  readonly table: string;
  /** The pool in use (the one given, or the one this lock created and will end on `close`). */
  readonly pool: pg.Pool;
  private readonly managed: ManagedPool;
  private readonly statements: LockStatements;
  private readonly retry: ResolvedLockRetry;
  private readonly migrateOnCreate: boolean;
  private readonly sweepIntervalMs: number;
  private readonly logger: Logger;
  private readonly otel: boolean;
  private sweeping: PeriodicTask | undefined;
  private closed = false;

  /** Validates `options` and opens (or adopts) the pool. Does not touch the database: see {@link createPostgresLock}. */
  constructor(options: PostgresLockOptions) {
    const given = expectObject(options, 'options');
    expectKnownKeys(given, LOCK_OPTION_KEYS, '');
    this.schema = validateIdentifier(stringOption(given.schema, 'schema', 'public'), 'schema');
    this.table = validateIdentifier(stringOption(given.table, 'table', 'arvo_lock'), 'table');
    this.migrateOnCreate = booleanOption(given.migrate, 'migrate', true);
    this.retry = resolveLockRetry(given.defaults, 'defaults');
    this.sweepIntervalMs = integerOption(
      given.sweepIntervalMs,
      'sweepIntervalMs',
      { min: 0, max: MAX_TIMER_MS },
      60_000,
    );
    this.otel = booleanOption(given.enableOtel, 'enableOtel', false);
    this.logger = loggerOption(given.logger, 'logger');
    this.statements = lockStatements(this.schema, this.table);
    this.managed = openPool(resolveConnection(given), this.logger);
    this.pool = this.managed.pool;
  }

  /** Creates the schema and table when missing (idempotent, safe to run from several processes). */
  async migrate(): Promise<void> {
    await this.run('migrate', {}, () =>
      applyMigrations(this.pool, { schema: this.schema, ...lockComponent(this.schema, this.table) }),
    );
  }

  /** Runs the `migrate` option and starts the periodic sweep. Called by {@link createPostgresLock}. */
  async start(): Promise<void> {
    if (this.migrateOnCreate) await this.migrate();
    await this.sweeping?.stop();
    this.sweeping = startPeriodic(
      this.sweepIntervalMs,
      () => this.sweepExpired(),
      this.logger,
      'arvo-postgres: sweeping expired locks failed',
    );
  }

  /**
   * One attempt: the lock on `key`, or `null` when someone else holds a live lock. The lock is taken
   * over when it expired, judged by the database clock.
   */
  async acquire(key: string, options: { ttlMs?: number } = {}): Promise<LockHandle | null> {
    validKey(key);
    // Only the TTL applies to one attempt: retry settings here would be ignored, so they are refused.
    const { ttlMs } = numericOptions(
      options,
      'acquire.options',
      { ttlMs: RETRY_RANGES.ttlMs },
      { ttlMs: this.retry.ttlMs },
    );
    return this.run('acquire', { 'arvo_postgres.lock.key': key }, async () => {
      const { rows } = await this.pool.query(this.statements.acquire, [key, randomUUID(), ttlMs]);
      return rows[0] ? lockHandleFromRow(rows[0]) : null;
    });
  }

  /**
   * Up to `maxAttempts` attempts with exponential backoff between them; `null` when all failed.
   * Each attempt is one pool query, so a waiting caller holds no connection.
   */
  async acquireWithRetry(key: string, options: LockRetryOptions = {}): Promise<LockHandle | null> {
    const retry = resolveLockRetry(options, 'acquireWithRetry.options', this.retry);
    return retryWithBackoff(retry, () => this.acquire(key, { ttlMs: retry.ttlMs }));
  }

  /**
   * Releases `handle`'s lock. `false` when it is no longer this holder's (taken over after expiry,
   * or already released): the new owner's lock is never touched.
   */
  async release(handle: LockHandle): Promise<boolean> {
    validHandle(handle);
    return this.run('release', { 'arvo_postgres.lock.key': handle.key }, async () => {
      const result = await this.pool.query(this.statements.release, [
        handle.key,
        handle.owner,
        handle.fencingToken.toString(),
      ]);
      return result.rowCount === 1;
    });
  }

  /**
   * Extends `handle`'s lock to `ttlMs` from now. Returns the renewed handle, or `null` when the lock is
   * lost: expired (even if nobody took it over yet — its holder can no longer rely on it), taken over
   * or released.
   */
  async renew(handle: LockHandle, ttlMs = this.retry.ttlMs): Promise<LockHandle | null> {
    validHandle(handle);
    integerOption(ttlMs, 'renew.ttlMs', RETRY_RANGES.ttlMs, ttlMs);
    return this.run('renew', { 'arvo_postgres.lock.key': handle.key }, async () => {
      const { rows } = await this.pool.query(this.statements.renew, [
        handle.key,
        handle.owner,
        handle.fencingToken.toString(),
        ttlMs,
      ]);
      return rows[0] ? lockHandleFromRow(rows[0]) : null;
    });
  }

  /**
   * Runs `fn` while holding the lock on `key` (acquired with retries) and releases it in `finally`.
   * Throws {@link LockUnavailableError} when the lock could not be acquired.
   */
  async withLock<T>(
    key: string,
    fn: (handle: LockHandle) => Promise<T>,
    options: LockRetryOptions = {},
  ): Promise<T> {
    const retry = resolveLockRetry(options, 'withLock.options', this.retry);
    const handle = await this.acquireWithRetry(key, retry);
    if (!handle) throw new LockUnavailableError(key, retry.maxAttempts);
    try {
      return await fn(handle);
    } finally {
      await this.release(handle).catch((error: unknown) => {
        writeLog(this.logger, 'warn', 'arvo-postgres: releasing a lock failed; it expires with its TTL', {
          key,
          error: describeError(error),
        });
      });
    }
  }

  /** The live lock on `key` (for diagnostics), or `null`. */
  async inspect(key: string): Promise<LockHandle | null> {
    validKey(key);
    return this.run('inspect', { 'arvo_postgres.lock.key': key }, async () => {
      const { rows } = await this.pool.query(this.statements.inspect, [key]);
      return rows[0] ? lockHandleFromRow(rows[0]) : null;
    });
  }

  /**
   * Deletes expired locks in batches of `batchSize`; returns how many rows were deleted. Stops after
   * the batch in flight when the lock is closed.
   */
  async sweepExpired(batchSize = 1000): Promise<number> {
    integerOption(batchSize, 'sweepExpired.batchSize', { min: 1, max: 100_000 }, batchSize);
    return this.run('sweep', {}, async () => {
      let total = 0;
      for (;;) {
        const { rowCount } = await this.pool.query(this.statements.sweepExpired, [batchSize]);
        total += rowCount ?? 0;
        // Closing stops a long sweep between batches (close() waits for the batch in flight).
        if ((rowCount ?? 0) < batchSize || this.closed) return total;
      }
    });
  }

  /**
   * Stops the periodic sweep, waits for a sweep in progress (it stops after its current batch) and
   * ends the pool if this lock created it. Safe to call twice.
   */
  async close(): Promise<void> {
    const first = !this.closed;
    this.closed = true;
    await this.sweeping?.stop();
    if (first) await closePool(this.managed);
  }

  private run<T>(operation: string, attributes: Record<string, string>, fn: () => Promise<T>): Promise<T> {
    return runOperation(this.otel, `arvo-postgres.lock.${operation}`, attributes, fn);
  }
}

/** A {@link PostgresLock} whose table exists (unless `migrate: false`) and whose sweep runs. */
export async function createPostgresLock(options: PostgresLockOptions): Promise<PostgresLock> {
  const lock = new PostgresLock(options);
  try {
    await lock.start();
  } catch (error) {
    await lock.close();
    throw redactError(error);
  }
  return lock;
}
