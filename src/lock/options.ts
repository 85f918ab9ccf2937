import { ArvoPostgresError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { type Logger, loggerOption } from '../shared/logger';
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
import { CONNECTION_OPTION_KEYS, type ConnectionOptions, resolveConnection } from '../shared/pool';
import type { LockHandle } from './handle';

/** Retry and TTL settings for acquiring a lock (defaults: {@link LOCK_RETRY_DEFAULTS}). */
export interface LockRetryOptions {
  /** Lock lifetime in ms; a holder that crashes blocks others at most this long. Default 30000. */
  ttlMs?: number;
  /** Attempts in total (1 = no retry). Default 4. */
  maxAttempts?: number;
  /** Ceiling of the wait before the second attempt, in ms (each wait is random below its ceiling). Default 50. */
  initialDelayMs?: number;
  /** Each further ceiling is the previous one times this factor. Default 2. */
  backoffExponent?: number;
  /** Upper bound of one wait, in ms. Default 1000. */
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

/**
 * The one default table of lock retries, for `PostgresLock` and the machine memory's `lock` alike:
 * 4 attempts (the prior art's 3 retries), waits below 50, 100, 200 ms (full jitter), capped at 1 s.
 */
export const LOCK_RETRY_DEFAULTS: ResolvedLockRetry = {
  ttlMs: 30_000,
  maxAttempts: 4,
  initialDelayMs: 50,
  backoffExponent: 2,
  maxDelayMs: 1_000,
};

/** Validates retry options given at `option` (a dotted path), filling gaps from `base`. */
export function resolveLockRetry(
  value: unknown,
  option: string,
  base: ResolvedLockRetry = LOCK_RETRY_DEFAULTS,
): ResolvedLockRetry {
  return numericOptions(value, option, RETRY_RANGES, base);
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

/** Validates the options of `PostgresLock`; an {@link InvalidOptionError} names the bad option. */
export function resolveLockOptions(options: unknown) {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, LOCK_OPTION_KEYS, '');
  return {
    schema: validateIdentifier(stringOption(given.schema, 'schema', 'public'), 'schema'),
    table: validateIdentifier(stringOption(given.table, 'table', 'arvo_lock'), 'table'),
    migrateOnCreate: booleanOption(given.migrate, 'migrate', true),
    retry: resolveLockRetry(given.defaults, 'defaults'),
    sweepIntervalMs: integerOption(
      given.sweepIntervalMs,
      'sweepIntervalMs',
      { min: 0, max: MAX_TIMER_MS },
      60_000,
    ),
    enableOtel: booleanOption(given.enableOtel, 'enableOtel', false),
    logger: loggerOption(given.logger, 'logger'),
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
  return numericOptions(options, 'acquire.options', { ttlMs: RETRY_RANGES.ttlMs }, { ttlMs: defaultTtlMs })
    .ttlMs;
}

/** The TTL `renew` extends a lock to. */
export function renewTtl(ttlMs: unknown): number {
  return integerOption(ttlMs, 'renew.ttlMs', RETRY_RANGES.ttlMs, 0);
}

/** The batch size of `sweepExpired`. */
export function sweepBatchSize(batchSize: unknown): number {
  return integerOption(batchSize, 'sweepExpired.batchSize', { min: 1, max: 100_000 }, 0);
}
