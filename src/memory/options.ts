import { LOCK_RETRY_DEFAULTS, type ResolvedLockRetry, resolveLockRetry } from '../lock/options';
import { InvalidOptionError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { type Logger, loggerOption } from '../shared/logger';
import {
  AGE_RANGE_MS,
  booleanOption,
  enumOption,
  expectKnownKeys,
  expectObject,
  integerOption,
  requireText,
  stringOption,
} from '../shared/options';
import { CONNECTION_OPTION_KEYS, type ConnectionOptions, resolveConnection } from '../shared/pool';
import type { MemoryTables } from './migrations/v1';

/** What `connectPostgresMachineMemory` does to the tables before use. */
export type MemoryMigrateMode = 'noop' | 'create_if_not_exists' | 'drop_and_recreate';

/** Options of {@link connectPostgresMachineMemory}. Every option is validated at connect. */
export interface PostgresMachineMemoryOptions extends ConnectionOptions {
  /** Postgres schema of both tables (created when migrating). Default `public`. */
  schema?: string;
  /** Table names. Defaults `arvo_workflow_state` and `arvo_workflow_lock`. */
  tables?: Partial<MemoryTables>;
  /**
   * `create_if_not_exists` (default) creates missing tables and indexes; `noop` only validates;
   * `drop_and_recreate` deletes all workflow state first (tests and demos only).
   */
  migrate?: MemoryMigrateMode;
  /**
   * Workflow lock settings, defaults as `PostgresLock`'s (see `LockRetryOptions`); `maxRetries` =
   * `maxAttempts - 1`, give one of them.
   */
  lock?: {
    /** Lock lifetime in ms. Default 30000. */
    ttlMs?: number;
    /** Attempts of `lock()` before it returns `false`. Default 4. */
    maxAttempts?: number;
    /** Retries after the first attempt (prior-art name). */
    maxRetries?: number;
    /** Ceiling of the wait before the second attempt in ms (each wait is random below it). Default 50. */
    initialDelayMs?: number;
    /** Growth factor of the ceiling. Default 2. */
    backoffExponent?: number;
    /** Upper bound of one wait in ms. Default 1000. */
    maxDelayMs?: number;
  };
  cleanup?: {
    /**
     * Delete a root workflow's whole tree as soon as it is written with a finished status. Default
     * `false`: a redelivered init event for a deleted workflow would start it again.
     */
    onCompletion?: boolean;
  };
  retention?: {
    /** Delete trees whose root finished longer ago than this (ms). Default: keep. */
    finishedAfterMs?: number;
    /** Delete trees with no write for this long (ms), whatever their status. Default: keep. */
    abandonedAfterMs?: number;
    /** Period of the automatic sweep in ms when a retention is set (`0` = never). Default 60000. */
    sweepIntervalMs?: number;
  };
  /** OpenTelemetry spans per operation. Default `false`. */
  enableOtel?: boolean;
  /** Where warnings go (failed sweeps, failed deferred unlocks). Default: console warnings and errors. */
  logger?: Logger;
}

const MEMORY_OPTION_KEYS = [
  ...CONNECTION_OPTION_KEYS,
  'schema',
  'tables',
  'migrate',
  'lock',
  'cleanup',
  'retention',
  'enableOtel',
  'logger',
] as const;

const DAY_MS = 86_400_000;

/** Validated table names (defaults filled in); they must differ. */
export function resolveMemoryTables(value: unknown): MemoryTables {
  const given = value === undefined ? {} : expectObject(value, 'tables');
  expectKnownKeys(given, ['state', 'lock', 'history'], 'tables');
  const tables: MemoryTables = {
    state: validateIdentifier(
      stringOption(given.state, 'tables.state', 'arvo_workflow_state'),
      'tables.state',
    ),
    lock: validateIdentifier(stringOption(given.lock, 'tables.lock', 'arvo_workflow_lock'), 'tables.lock'),
    history: validateIdentifier(
      stringOption(given.history, 'tables.history', 'arvo_event_history'),
      'tables.history',
    ),
  };
  if (tables.state === tables.lock) {
    throw new InvalidOptionError('tables.lock', 'must differ from `tables.state`');
  }
  if (tables.history === tables.state || tables.history === tables.lock) {
    throw new InvalidOptionError('tables.history', 'must differ from `tables.state` and `tables.lock`');
  }
  return tables;
}

/** The validated options of `memoryMigrationSql`: where the tables live. */
export function resolveMemoryLocation(options: unknown): { schema: string; tables: MemoryTables } {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, ['schema', 'tables'], '');
  return { schema: resolveSchema(given.schema), tables: resolveMemoryTables(given.tables) };
}

function resolveSchema(value: unknown): string {
  return validateIdentifier(stringOption(value, 'schema', 'public'), 'schema');
}

/** The `lock` option: {@link LOCK_RETRY_DEFAULTS} overridden field by field, `maxRetries` translated. */
function resolveMemoryLockRetry(value: unknown): ResolvedLockRetry {
  if (value === undefined) return LOCK_RETRY_DEFAULTS;
  const { maxRetries, ...rest } = expectObject(value, 'lock');
  if (maxRetries !== undefined) {
    if (rest.maxAttempts !== undefined) {
      throw new InvalidOptionError('lock.maxRetries', 'give either `maxRetries` or `maxAttempts`, not both');
    }
    rest.maxAttempts = integerOption(maxRetries, 'lock.maxRetries', { min: 0, max: 999 }, 0) + 1;
  }
  return resolveLockRetry(rest, 'lock');
}

/** Validates the options of `connectPostgresMachineMemory`; an {@link InvalidOptionError} names the bad one. */
export function resolveMemoryOptions(options: unknown) {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, MEMORY_OPTION_KEYS, '');
  const schema = resolveSchema(given.schema);
  const tables = resolveMemoryTables(given.tables);
  const lockRetry = resolveMemoryLockRetry(given.lock);

  const cleanup = given.cleanup === undefined ? {} : expectObject(given.cleanup, 'cleanup');
  expectKnownKeys(cleanup, ['onCompletion'], 'cleanup');
  const retention = given.retention === undefined ? {} : expectObject(given.retention, 'retention');
  expectKnownKeys(retention, ['finishedAfterMs', 'abandonedAfterMs', 'sweepIntervalMs'], 'retention');
  const finishedAfterMs = optionalAge(retention, 'finishedAfterMs', 'retention', undefined);
  const abandonedAfterMs = optionalAge(retention, 'abandonedAfterMs', 'retention', undefined);
  const hasRetention = finishedAfterMs !== undefined || abandonedAfterMs !== undefined;
  const sweepIntervalMs = integerOption(
    retention.sweepIntervalMs,
    'retention.sweepIntervalMs',
    { min: 0, max: DAY_MS },
    hasRetention ? 60_000 : 0,
  );
  if (sweepIntervalMs > 0 && !hasRetention) {
    throw new InvalidOptionError(
      'retention.sweepIntervalMs',
      'a periodic sweep needs `retention.finishedAfterMs` or `retention.abandonedAfterMs`',
    );
  }

  return {
    connection: resolveConnection(given),
    schema,
    tables,
    migrate: enumOption(
      given.migrate,
      'migrate',
      ['noop', 'create_if_not_exists', 'drop_and_recreate'],
      'create_if_not_exists',
    ),
    lockRetry,
    cleanupOnCompletion: booleanOption(cleanup.onCompletion, 'cleanup.onCompletion', false),
    finishedAfterMs,
    abandonedAfterMs,
    sweepIntervalMs,
    enableOtel: booleanOption(given.enableOtel, 'enableOtel', false),
    logger: loggerOption(given.logger, 'logger'),
  };
}

/** {@link PostgresMachineMemoryOptions}, validated, with defaults filled in. */
export type MemoryConfig = ReturnType<typeof resolveMemoryOptions>;

/** An age in ms at `given[key]` (errors name `option.key`), or `fallback` when not given. */
function optionalAge(
  given: Record<string, unknown>,
  key: string,
  option: string,
  fallback: number | undefined,
): number | undefined {
  return given[key] === undefined ? fallback : integerOption(given[key], `${option}.${key}`, AGE_RANGE_MS, 0);
}

// Per-call arguments of `PostgresMachineMemory`'s methods.

/** A workflow subject given to a method: storable, indexable text. */
export function requireSubject(subject: unknown): string {
  return requireText(subject, 'A workflow subject', 'INVALID_ARGUMENT');
}

/** The arguments of {@link PostgresMachineMemory.sweep}, ages defaulting to the configured retention. */
export function resolveSweepOptions(
  options: unknown,
  config: MemoryConfig,
): { finishedAge: number | undefined; abandonedAge: number | undefined; batchSize: number } {
  const given = expectObject(options, 'sweep.options');
  expectKnownKeys(given, ['olderThanMs', 'abandonedOlderThanMs', 'batchSize'], 'sweep.options');
  return {
    finishedAge: optionalAge(given, 'olderThanMs', 'sweep.options', config.finishedAfterMs),
    abandonedAge: optionalAge(given, 'abandonedOlderThanMs', 'sweep.options', config.abandonedAfterMs),
    batchSize: integerOption(given.batchSize, 'sweep.options.batchSize', { min: 1, max: 100_000 }, 500),
  };
}
