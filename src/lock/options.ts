import { ArvoPostgresError } from '../shared/errors';
import { LOGGER_OPTION, type Logger } from '../shared/logger';
import {
  expectObject,
  finite,
  flag,
  identifier,
  integer,
  MAX_TIMER_MS,
  nested,
  type OptionTable,
  requireText,
  resolveOptions,
} from '../shared/options';
import { CONNECTION_OPTIONS, type ConnectionOptions, resolveConnection } from '../shared/pool';
import type { LockHandle } from './handle';

/** Retry and TTL settings for acquiring a lock (defaults: {@link LOCK_RETRY_DEFAULTS}). */
export interface LockRetryOptions {
  /**
   * Lock lifetime in ms; a holder that crashes blocks others at most this long.
   * @defaultValue `30000`
   */
  ttlMs?: number;
  /**
   * Attempts in total of `acquireWithRetry` and `withLock` (1 = no retry).
   * @defaultValue `4`
   */
  maxAttempts?: number;
  /**
   * Ceiling of the wait before the second attempt, in ms (each wait is random below its ceiling).
   * @defaultValue `50`
   */
  initialDelayMs?: number;
  /**
   * Each further ceiling is the previous one times this factor.
   * @defaultValue `2`
   */
  backoffExponent?: number;
  /**
   * Upper bound of one wait, in ms.
   * @defaultValue `1000`
   */
  maxDelayMs?: number;
}

/** Options of {@link PostgresLock}: how to connect plus where the table lives and the defaults. */
export interface PostgresLockOptions extends ConnectionOptions {
  /**
   * Postgres schema of the lock table.
   * @defaultValue `public`
   */
  schema?: string;
  /**
   * Lock table name.
   * @defaultValue `arvo_lock`
   */
  table?: string;
  /**
   * Create the schema and table when missing (`createPostgresLock` only).
   * @defaultValue `true`
   */
  migrate?: boolean;
  /** Defaults for `acquire`, `acquireWithRetry` and `withLock` (as the memory's `lock`). */
  defaults?: LockRetryOptions;
  /**
   * Delete expired rows every this many ms (`0` = never; call `sweepExpired()` yourself).
   * @defaultValue `60000`
   */
  sweepIntervalMs?: number;
  /**
   * Where warnings (failed sweeps) go.
   * @defaultValue console (warn/error)
   */
  logger?: Logger;
  /**
   * Create OpenTelemetry spans for lock operations.
   * @defaultValue `false`
   */
  enableOtel?: boolean;
}

/**
 * The one table of lock retries, for `PostgresLock` and the machine memory's `lock` alike: 4
 * attempts (the prior art's 3 retries), waits below 50, 100, 200 ms (full jitter), capped at 1 s.
 */
export const LOCK_RETRY_OPTIONS = {
  ttlMs: integer({ min: 1, max: 86_400_000 }, 30_000),
  maxAttempts: integer({ min: 1, max: 1000 }, 4),
  initialDelayMs: integer({ min: 0, max: 600_000 }, 50),
  backoffExponent: finite({ min: 1, max: 10 }, 2),
  maxDelayMs: integer({ min: 0, max: 600_000 }, 1_000),
} satisfies OptionTable<LockRetryOptions>;

/** Fully resolved {@link LockRetryOptions}. */
export type ResolvedLockRetry = Required<LockRetryOptions>;

/** The defaults of {@link LockRetryOptions}. */
export const LOCK_RETRY_DEFAULTS: ResolvedLockRetry = resolveOptions(LOCK_RETRY_OPTIONS, undefined, '');

/** Validates retry options given at `option` (a dotted path), filling gaps from `base`. */
export function resolveLockRetry(
  value: unknown,
  option: string,
  base: ResolvedLockRetry = LOCK_RETRY_DEFAULTS,
): ResolvedLockRetry {
  return resolveOptions(LOCK_RETRY_OPTIONS, value, option, base);
}

/** The options of `PostgresLock`, beside the connection's. */
export const LOCK_OPTIONS = {
  ...CONNECTION_OPTIONS,
  schema: identifier('public'),
  table: identifier('arvo_lock'),
  migrate: flag(true),
  defaults: nested(LOCK_RETRY_OPTIONS),
  sweepIntervalMs: integer({ min: 0, max: MAX_TIMER_MS }, 60_000),
  logger: LOGGER_OPTION,
  enableOtel: flag(false),
} satisfies OptionTable<PostgresLockOptions>;

/** Validates the options of `PostgresLock`; an {@link InvalidOptionError} names the bad option. */
export function resolveLockOptions(options: unknown) {
  const given = expectObject(options, 'options');
  const { schema, table, migrate, defaults, sweepIntervalMs, enableOtel, logger } = resolveOptions(
    LOCK_OPTIONS,
    given,
    '',
  );
  return {
    schema,
    table,
    migrateOnCreate: migrate,
    retry: defaults,
    sweepIntervalMs,
    enableOtel,
    logger,
    connection: resolveConnection(given),
  };
}

/** {@link PostgresLockOptions}, validated, with defaults filled in. */
export type LockConfig = ReturnType<typeof resolveLockOptions>;

// Per-call arguments of `PostgresLock`'s methods.

export function validKey(key: unknown): string {
  return requireText(key, 'A lock key', 'INVALID_LOCK_KEY');
}

/** `handle` as `acquire` returned it; anything else is a typed error, not a TypeError. */
export function validHandle(handle: unknown): LockHandle {
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

/** The TTL of one `acquire` attempt; retry settings there would be ignored, so they are refused. */
export function acquireTtl(options: unknown, defaultTtlMs: number): number {
  return resolveOptions({ ttlMs: LOCK_RETRY_OPTIONS.ttlMs }, options, 'acquire.options', {
    ttlMs: defaultTtlMs,
  }).ttlMs;
}

/** The TTL `renew` extends a lock to. */
export function renewTtl(ttlMs: unknown): number {
  return LOCK_RETRY_OPTIONS.ttlMs.check(ttlMs, 'renew.ttlMs');
}

/** The batch size of `sweepExpired`. */
export function sweepBatchSize(batchSize: unknown): number {
  return integer({ min: 1, max: 100_000 }).check(batchSize, 'sweepExpired.batchSize');
}
