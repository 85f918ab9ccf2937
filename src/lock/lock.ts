import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { retryWithBackoff } from '../shared/backoff';
import { writeLog } from '../shared/logger';
import { applyMigrations } from '../shared/migrations';
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import { closePool, type ManagedPool, openPool } from '../shared/pool';
import { describeError, redactError } from '../shared/redact';
import { runOperation } from '../shared/telemetry';
import { LockUnavailableError } from './errors';
import { type LockHandle, lockHandleFromRow } from './handle';
import {
  acquireTtl,
  type LockConfig,
  type LockRetryOptions,
  type PostgresLockOptions,
  renewTtl,
  resolveLockOptions,
  resolveLockRetry,
  sweepBatchSize,
  validHandle,
  validKey,
} from './options';
import { lockComponent } from './schema';
import { type LockStatements, lockStatements } from './sql';

/**
 * TTL row locks in a Postgres table, with an owner per acquisition and a fencing token that only
 * grows. Every operation is a single statement on the pool: no connection is held between retries.
 */
export class PostgresLock {
  readonly schema: string;
  readonly table: string;
  /** The pool in use (the one given, or the one this lock created and will end on `close`). */
  readonly pool: pg.Pool;
  readonly #config: LockConfig;
  readonly #managed: ManagedPool;
  readonly #statements: LockStatements;
  #sweeping: PeriodicTask | undefined;
  #closed = false;

  /** Validates `options` and opens (or adopts) the pool. Does not touch the database: see {@link createPostgresLock}. */
  constructor(options: PostgresLockOptions) {
    this.#config = resolveLockOptions(options);
    this.schema = this.#config.schema;
    this.table = this.#config.table;
    this.#statements = lockStatements(this.schema, this.table);
    this.#managed = openPool(this.#config.connection, this.#config.logger);
    this.pool = this.#managed.pool;
  }

  /** Creates the schema and table when missing (idempotent, safe to run from several processes). */
  async migrate(): Promise<void> {
    await this.#run('migrate', {}, () =>
      applyMigrations(this.pool, { schema: this.schema, ...lockComponent(this.schema, this.table) }),
    );
  }

  /** Runs the `migrate` option and starts the periodic sweep. Called by {@link createPostgresLock}. */
  async start(): Promise<void> {
    if (this.#config.migrateOnCreate) await this.migrate();
    await this.#sweeping?.stop();
    this.#sweeping = startPeriodic(
      this.#config.sweepIntervalMs,
      () => this.sweepExpired(),
      this.#config.logger,
      'arvo-postgres: sweeping expired locks failed',
    );
  }

  /**
   * One attempt: the lock on `key`, or `null` when someone else holds a live lock. The lock is taken
   * over when it expired, judged by the database clock.
   */
  async acquire(key: string, options: { ttlMs?: number } = {}): Promise<LockHandle | null> {
    validKey(key);
    const ttlMs = acquireTtl(options, this.#config.retry.ttlMs);
    return this.#run('acquire', { 'arvo_postgres.lock.key': key }, async () => {
      const { rows } = await this.pool.query(this.#statements.acquire, [key, randomUUID(), ttlMs]);
      return rows[0] ? lockHandleFromRow(rows[0]) : null;
    });
  }

  /**
   * Up to `maxAttempts` attempts with exponential backoff and full jitter between them; `null` when
   * all failed. Each attempt is one pool query, so a waiting caller holds no connection.
   */
  async acquireWithRetry(key: string, options: LockRetryOptions = {}): Promise<LockHandle | null> {
    const retry = resolveLockRetry(options, 'acquireWithRetry.options', this.#config.retry);
    return retryWithBackoff(retry, () => this.acquire(key, { ttlMs: retry.ttlMs }));
  }

  /**
   * Releases `handle`'s lock. `false` when it is no longer this holder's (taken over after expiry,
   * or already released): the new owner's lock is never touched.
   */
  async release(handle: LockHandle): Promise<boolean> {
    validHandle(handle);
    return this.#run('release', { 'arvo_postgres.lock.key': handle.key }, async () => {
      const result = await this.pool.query(this.#statements.release, [
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
  async renew(handle: LockHandle, ttlMs = this.#config.retry.ttlMs): Promise<LockHandle | null> {
    validHandle(handle);
    renewTtl(ttlMs);
    return this.#run('renew', { 'arvo_postgres.lock.key': handle.key }, async () => {
      const { rows } = await this.pool.query(this.#statements.renew, [
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
    const retry = resolveLockRetry(options, 'withLock.options', this.#config.retry);
    const handle = await this.acquireWithRetry(key, retry);
    if (!handle) throw new LockUnavailableError(key, retry.maxAttempts);
    try {
      return await fn(handle);
    } finally {
      await this.release(handle).catch((error: unknown) => {
        writeLog(
          this.#config.logger,
          'warn',
          'arvo-postgres: releasing a lock failed; it expires with its TTL',
          { key, error: describeError(error) },
        );
      });
    }
  }

  /** The live lock on `key` (for diagnostics), or `null`. */
  async inspect(key: string): Promise<LockHandle | null> {
    validKey(key);
    return this.#run('inspect', { 'arvo_postgres.lock.key': key }, async () => {
      const { rows } = await this.pool.query(this.#statements.inspect, [key]);
      return rows[0] ? lockHandleFromRow(rows[0]) : null;
    });
  }

  /**
   * Deletes expired locks in batches of `batchSize`; returns how many rows were deleted. Stops after
   * the batch in flight when the lock is closed.
   */
  async sweepExpired(batchSize = 1000): Promise<number> {
    sweepBatchSize(batchSize);
    return this.#run('sweep', {}, async () => {
      let total = 0;
      for (;;) {
        const { rowCount } = await this.pool.query(this.#statements.sweepExpired, [batchSize]);
        total += rowCount ?? 0;
        // Closing stops a long sweep between batches (close() waits for the batch in flight).
        if ((rowCount ?? 0) < batchSize || this.#closed) return total;
      }
    });
  }

  /**
   * Stops the periodic sweep, waits for a sweep in progress (it stops after its current batch) and
   * ends the pool if this lock created it. Safe to call twice.
   */
  async close(): Promise<void> {
    const first = !this.#closed;
    this.#closed = true;
    await this.#sweeping?.stop();
    if (first) await closePool(this.#managed);
  }

  #run<T>(operation: string, attributes: Record<string, string>, fn: () => Promise<T>): Promise<T> {
    return runOperation(this.#config.enableOtel, `arvo-postgres.lock.${operation}`, attributes, fn);
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
