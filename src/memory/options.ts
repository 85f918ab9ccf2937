import { LOCK_RETRY_OPTIONS, type ResolvedLockRetry } from '../lock/options';
import { InvalidOptionError } from '../shared/errors';
import { LOGGER_OPTION, type Logger } from '../shared/logger';
import {
  AGE_RANGE_MS,
  expectKnownKeys,
  expectObject,
  flag,
  identifier,
  integer,
  nested,
  type OptionTable,
  oneOf,
  requireText,
  resolveOptions,
} from '../shared/options';
import { CONNECTION_OPTIONS, type ConnectionOptions, resolveConnection } from '../shared/pool';
import type { MemoryTables } from './migrations/v1';

/** What `connectPostgresMachineMemory` does to the tables before use. */
export type MemoryMigrateMode = 'noop' | 'create_if_not_exists' | 'drop_and_recreate';

/** Options of {@link connectPostgresMachineMemory}. Every option is validated at connect. */
export interface PostgresMachineMemoryOptions extends ConnectionOptions {
  /**
   * Postgres schema of both tables (created when migrating).
   * @defaultValue `public`
   */
  schema?: string;
  /** Table names. */
  tables?: Partial<MemoryTables>;
  /**
   * `create_if_not_exists` creates missing tables and indexes; `noop` only validates;
   * `drop_and_recreate` deletes all workflow state first (tests and demos only).
   * @defaultValue `create_if_not_exists`
   */
  migrate?: MemoryMigrateMode;
  /** Workflow lock settings, defaults as `PostgresLock`'s (see `LockRetryOptions`). */
  lock?: {
    /**
     * Lock lifetime in ms; a crashed holder blocks a workflow at most this long.
     * @defaultValue `30000`
     */
    ttlMs?: number;
    /**
     * Attempts of `lock()` before it returns `false` (or `maxRetries`, not both).
     * @defaultValue `4`
     */
    maxAttempts?: number;
    /**
     * Retries after the first attempt, the prior art's name for `maxAttempts` − 1.
     * @defaultValue —
     */
    maxRetries?: number;
    /**
     * Ceiling of the wait before the second attempt in ms (each wait is random below its ceiling).
     * @defaultValue `50`
     */
    initialDelayMs?: number;
    /**
     * Growth factor of the ceiling.
     * @defaultValue `2`
     */
    backoffExponent?: number;
    /**
     * Upper bound of one wait in ms.
     * @defaultValue `1000`
     */
    maxDelayMs?: number;
  };
  /** What happens to a workflow's records when it finishes. */
  cleanup?: {
    /**
     * Delete a root workflow's whole tree as soon as it is written with a finished status (a
     * redelivered init event for a deleted workflow would start it again).
     * @defaultValue `false`
     */
    onCompletion?: boolean;
  };
  /** Deletion of old workflow trees by a periodic sweep. */
  retention?: {
    /**
     * Delete trees whose root finished longer ago than this (ms).
     * @defaultValue keep
     */
    finishedAfterMs?: number;
    /**
     * Delete trees with no write for this long (ms), whatever their status.
     * @defaultValue keep
     */
    abandonedAfterMs?: number;
    /**
     * Period of the automatic sweep in ms when a retention is set (`0` = never).
     * @defaultValue `60000` with a retention
     */
    sweepIntervalMs?: number;
  };
  /**
   * OpenTelemetry spans per operation.
   * @defaultValue `false`
   */
  enableOtel?: boolean;
  /**
   * Where warnings go (failed sweeps).
   * @defaultValue console (warn/error)
   */
  logger?: Logger;
}

const DAY_MS = 86_400_000;

/** Table names, each a SQL identifier; they must differ. */
const TABLES_OPTION = nested(
  {
    state: identifier('arvo_workflow_state'),
    lock: identifier('arvo_workflow_lock'),
    history: identifier('arvo_event_history'),
  } satisfies OptionTable<MemoryTables>,
  (tables: MemoryTables, option): MemoryTables => {
    const at = (key: string) => (option ? `${option}.${key}` : key);
    if (tables.state === tables.lock) {
      throw new InvalidOptionError(at('lock'), 'must differ from `tables.state`');
    }
    if (tables.history === tables.state || tables.history === tables.lock) {
      throw new InvalidOptionError(at('history'), 'must differ from `tables.state` and `tables.lock`');
    }
    return tables;
  },
);

/** The `lock` option: `PostgresLock`'s retry table plus `maxRetries`, translated to `maxAttempts`. */
const MEMORY_LOCK_OPTION = nested(
  { ...LOCK_RETRY_OPTIONS, maxRetries: integer({ min: 0, max: 999 }) },
  ({ maxRetries, ...retry }, option, given): ResolvedLockRetry => {
    if (maxRetries === undefined) return retry;
    if (given.maxAttempts !== undefined) {
      throw new InvalidOptionError(
        `${option}.maxRetries`,
        'give either `maxRetries` or `maxAttempts`, not both',
      );
    }
    return { ...retry, maxAttempts: maxRetries + 1 };
  },
);

/** An age in ms (`AGE_RANGE_MS`). */
const age = () => integer(AGE_RANGE_MS);

/** The `retention` option: a periodic sweep (every minute by default) needs an age to sweep by. */
const RETENTION_OPTION = nested(
  {
    finishedAfterMs: age(),
    abandonedAfterMs: age(),
    sweepIntervalMs: integer({ min: 0, max: DAY_MS }),
  },
  (retention, option) => {
    const hasRetention = retention.finishedAfterMs !== undefined || retention.abandonedAfterMs !== undefined;
    const sweepIntervalMs = retention.sweepIntervalMs ?? (hasRetention ? 60_000 : 0);
    if (sweepIntervalMs > 0 && !hasRetention) {
      throw new InvalidOptionError(
        `${option}.sweepIntervalMs`,
        'a periodic sweep needs `retention.finishedAfterMs` or `retention.abandonedAfterMs`',
      );
    }
    return { ...retention, sweepIntervalMs };
  },
);

/** The checks and defaults of {@link PostgresMachineMemoryOptions}. */
export const MEMORY_OPTIONS = {
  ...CONNECTION_OPTIONS,
  schema: identifier('public'),
  tables: TABLES_OPTION,
  migrate: oneOf<MemoryMigrateMode>(
    ['noop', 'create_if_not_exists', 'drop_and_recreate'],
    'create_if_not_exists',
  ),
  lock: MEMORY_LOCK_OPTION,
  cleanup: nested({ onCompletion: flag(false) }),
  retention: RETENTION_OPTION,
  enableOtel: flag(false),
  logger: LOGGER_OPTION,
} satisfies OptionTable<PostgresMachineMemoryOptions>;

/** Validated table names (defaults filled in); they must differ. */
export function resolveMemoryTables(value: unknown): MemoryTables {
  return TABLES_OPTION.check(value, 'tables');
}

/** The validated options of `memoryMigrationSql`: where the tables live. */
export function resolveMemoryLocation(options: unknown): { schema: string; tables: MemoryTables } {
  const { schema, tables } = MEMORY_OPTIONS;
  return resolveOptions({ schema, tables }, expectObject(options, 'options'), '');
}

/** Validates the options of `connectPostgresMachineMemory`; an {@link InvalidOptionError} names the bad one. */
export function resolveMemoryOptions(options: unknown) {
  const given = expectObject(options, 'options');
  const { schema, tables, migrate, lock, cleanup, retention, enableOtel, logger } = resolveOptions(
    MEMORY_OPTIONS,
    given,
    '',
  );
  return {
    connection: resolveConnection(given),
    schema,
    tables,
    migrate,
    lockRetry: lock,
    cleanupOnCompletion: cleanup.onCompletion,
    finishedAfterMs: retention.finishedAfterMs,
    abandonedAfterMs: retention.abandonedAfterMs,
    sweepIntervalMs: retention.sweepIntervalMs,
    enableOtel,
    logger,
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
  return given[key] === undefined ? fallback : age().check(given[key], `${option}.${key}`);
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
    batchSize: integer({ min: 1, max: 100_000 }, 500).check(
      given.batchSize ?? 500,
      'sweep.options.batchSize',
    ),
  };
}
