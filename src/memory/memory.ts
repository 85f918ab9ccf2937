import { randomUUID } from 'node:crypto';
import { ArvoOrchestrationSubject } from 'arvo-core';
import format from 'pg-format';
import { type LockHandle, type LockRow, lockHandleFromRow } from '../lock/handle';
import { PostgresLock } from '../lock/lock';
import { LOCK_COLUMNS_V1 } from '../lock/migrations/v1';
import { LOCK_RETRY_DEFAULTS, type ResolvedLockRetry, resolveLockRetry } from '../lock/options';
import { lockComponent } from '../lock/schema';
import { retryWithBackoff } from '../shared/backoff';
import { ArvoPostgresError, InvalidOptionError } from '../shared/errors';
import { qualifiedName, validateIdentifier } from '../shared/identifiers';
import { oversizedIndexedText, oversizedIndexedTextReason } from '../shared/indexed-text';
import { jsonUnstorableCharacter } from '../shared/json';
import { type Logger, loggerOption, writeLog } from '../shared/logger';
import {
  applyMigrations,
  MIGRATIONS_TABLE,
  type MigrationColumn,
  type MigrationComponent,
  migrationsTableSql,
} from '../shared/migrations';
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
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import {
  CONNECTION_OPTION_KEYS,
  type ConnectionOptions,
  closePool,
  type ManagedPool,
  openPool,
  type ResolvedConnection,
  resolveConnection,
} from '../shared/pool';
import { describeError, redactError } from '../shared/redact';
import { runOperation } from '../shared/telemetry';
import {
  type AmbientTransaction,
  ambientTransactionFor,
  currentJobScope,
  readDatabaseId,
} from '../shared/transaction';
import {
  type ArvoToolsMachineMemoryOptions,
  isArvoToolsOptions,
  resolveArvoToolsOptions,
} from './arvo-tools-options';
import { MachineMemoryConflictError, MachineMemoryTableStructureError } from './errors';
import { type MemoryTables, STATE_COLUMNS_V1, stateMigrationV1 } from './migrations/v1';
import { isFinishedWorkflow, type MemoryStatements, memoryStatements, type NamedStatement } from './sql';
import { type StateChanges, stateChanges } from './state-changes';
import type { IMachineMemory } from './types';

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
  /** Workflow lock settings (see `LockRetryOptions`); `maxRetries` = `maxAttempts - 1`, give one of them. */
  lock?: {
    /** Lock lifetime in ms. Default 30000. */
    ttlMs?: number;
    /** Attempts of `lock()` before it returns `false`. Default 4. */
    maxAttempts?: number;
    /** Retries after the first attempt (prior-art name). */
    maxRetries?: number;
    /** Wait before the second attempt in ms. Default 50. */
    initialDelayMs?: number;
    /** Growth factor of the wait. Default 2. */
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

/** Result of {@link PostgresMachineMemory.sweep}. */
export interface MemorySweepResult {
  /** Workflow trees deleted because their root finished before the retention. */
  finishedTrees: number;
  /** Workflow trees deleted because nothing in them was written for too long. */
  abandonedTrees: number;
  /** Records deleted in total. */
  deletedRecords: number;
  /** Expired lock rows deleted. */
  expiredLocks: number;
}

interface MemoryConfig {
  connection: ResolvedConnection;
  schema: string;
  tables: MemoryTables;
  migrate: MemoryMigrateMode;
  lockRetry: ResolvedLockRetry;
  cleanupOnCompletion: boolean;
  finishedAfterMs: number | undefined;
  abandonedAfterMs: number | undefined;
  sweepIntervalMs: number;
  enableOtel: boolean;
  logger: Logger;
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

/** Period of the lock-row sweep when no retention sweep runs. */
const LOCK_SWEEP_INTERVAL_MS = 60_000;

/** Validated table names (defaults filled in); they must differ. */
export function resolveMemoryTables(value: unknown): MemoryTables {
  const given = value === undefined ? {} : expectObject(value, 'tables');
  expectKnownKeys(given, ['state', 'lock'], 'tables');
  const tables: MemoryTables = {
    state: validateIdentifier(
      stringOption(given.state, 'tables.state', 'arvo_workflow_state'),
      'tables.state',
    ),
    lock: validateIdentifier(stringOption(given.lock, 'tables.lock', 'arvo_workflow_lock'), 'tables.lock'),
  };
  if (tables.state === tables.lock) {
    throw new InvalidOptionError('tables.lock', 'must differ from `tables.state`');
  }
  return tables;
}

function resolveMemoryOptions(options: unknown): MemoryConfig {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, MEMORY_OPTION_KEYS, '');
  const schema = validateIdentifier(stringOption(given.schema, 'schema', 'public'), 'schema');
  const tables = resolveMemoryTables(given.tables);

  let lockRetry = LOCK_RETRY_DEFAULTS;
  if (given.lock !== undefined) {
    const { maxRetries, ...rest } = expectObject(given.lock, 'lock');
    if (maxRetries !== undefined) {
      if (rest.maxAttempts !== undefined) {
        throw new InvalidOptionError(
          'lock.maxRetries',
          'give either `maxRetries` or `maxAttempts`, not both',
        );
      }
      rest.maxAttempts = integerOption(maxRetries, 'lock.maxRetries', { min: 0, max: 999 }, 0) + 1;
    }
    lockRetry = resolveLockRetry(rest, 'lock');
  }

  const cleanup = given.cleanup === undefined ? {} : expectObject(given.cleanup, 'cleanup');
  expectKnownKeys(cleanup, ['onCompletion'], 'cleanup');
  const retention = given.retention === undefined ? {} : expectObject(given.retention, 'retention');
  expectKnownKeys(retention, ['finishedAfterMs', 'abandonedAfterMs', 'sweepIntervalMs'], 'retention');
  const age = (key: string) =>
    retention[key] === undefined
      ? undefined
      : integerOption(retention[key], `retention.${key}`, AGE_RANGE_MS, 0);
  const finishedAfterMs = age('finishedAfterMs');
  const abandonedAfterMs = age('abandonedAfterMs');
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

/**
 * The migrated components of a machine memory, state table first: `memory:<state table>` and the
 * lock table's `lock:<lock table>`. What `migrate` applies and `arvo-postgres doctor` checks.
 */
export function memoryComponents(schema: string, tables: MemoryTables): MigrationComponent[] {
  return [
    {
      component: `memory:${tables.state}`,
      table: tables.state,
      migrations: [stateMigrationV1(schema, tables.state)],
    },
    lockComponent(schema, tables.lock),
  ];
}

/**
 * The DDL a machine memory needs, as one SQL script (schema, tables, indexes and the bookkeeping row
 * that tells a later `create_if_not_exists` it is in place). For reviewing or applying by hand.
 */
export function memoryMigrationSql(
  options: { schema?: string; tables?: Partial<MemoryTables> } = {},
): string {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, ['schema', 'tables'], '');
  const schema = validateIdentifier(stringOption(given.schema, 'schema', 'public'), 'schema');
  const tables = resolveMemoryTables(given.tables);
  const statements = [...migrationsTableSql(schema)];
  for (const { component, migrations } of memoryComponents(schema, tables)) {
    for (const migration of migrations) {
      statements.push(...migration.statements);
      statements.push(
        format(
          'INSERT INTO %s (component, version, description) VALUES (%L, %s, %L) ON CONFLICT DO NOTHING',
          qualifiedName(schema, MIGRATIONS_TABLE),
          component,
          migration.version,
          migration.description,
        ),
      );
    }
  }
  return `${statements.join(';\n\n')};\n`;
}

/** Applies `mode` to the memory tables `tables` in `schema` (each table's migrations in one transaction). */
export async function migrateMemoryTables(
  pool: ManagedPool['pool'],
  schema: string,
  tables: MemoryTables,
  mode: MemoryMigrateMode,
): Promise<void> {
  if (mode === 'noop') return;
  for (const { component, table, migrations } of memoryComponents(schema, tables)) {
    await applyMigrations(pool, {
      schema,
      component,
      migrations,
      ...(mode === 'drop_and_recreate'
        ? { before: [`DROP TABLE IF EXISTS ${qualifiedName(schema, table)}`] }
        : {}),
    });
  }
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/**
 * A `write` metadata value as a string: the string itself, or the `value` of an arvo 3 materialized
 * value once it is resolved (`{ value: 'com.my.client', … }`); `null` for a pending one or anything else.
 */
function metadataString(value: unknown): string | null {
  if (typeof value === 'object' && value !== null)
    return optionalString((value as { value?: unknown }).value);
  return optionalString(value);
}

function shortSubject(subject: string): string {
  return subject.length > 40 ? `${subject.slice(0, 40)}…` : subject;
}

function requireSubject(subject: unknown): string {
  return requireText(subject, 'A workflow subject', 'INVALID_ARGUMENT');
}

function requireRecord(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArvoPostgresError(
      'INVALID_ARGUMENT',
      `\`${name}\` must be a plain object (the workflow record)`,
    );
  }
  return value as Record<string, unknown>;
}

/** The orchestrator named in an orchestration subject, or `null` for any other subject. */
function orchestratorOf(subject: string): string | null {
  try {
    return ArvoOrchestrationSubject.parse(subject).orchestrator.name;
  } catch {
    return null;
  }
}

/** A stored record and its version, as the read statements return it. */
interface StateRow {
  data: Record<string, any>;
  version: string;
}

/**
 * A lock this instance holds, and the subject's record read by the statement that took it, kept for
 * the next `read` (orchestrators always read right after locking: this saves that round trip).
 *
 * Why serving the prefetched record is as safe as a fresh read:
 * - It is read in the statement that acquired the lock, so it is the record as of the acquisition.
 *   Records are only written under the lock (the orchestrator protocol), so a fresh read right after
 *   `lock` returns the same record — unless someone wrote without holding the lock: a stale holder
 *   whose lock expired and was taken over by us (or a writer that never locks). A fresh read does
 *   not protect against that either; what does is the compare-and-swap on the version in `write`,
 *   and it rejects a write based on an old prefetched record exactly as it rejects one based on an
 *   old read: nothing can be committed over a newer version.
 * - Any change to state rows made through a memory of this process (a `write` of any job, `cleanup`,
 *   a sweep, a tree deleted on completion) is counted in {@link stateChanges} when its statement
 *   returns and again when its transaction settles; the record is served only while that count is
 *   what it was before the lock statement was sent, else `read` goes to the database. Every changing
 *   statement runs through `change()`, so no prefetched record outlives a change of this process.
 *   Another process can change the row only without the lock (a `cleanup` or sweep there, a stale
 *   holder's write): a `read` served from the prefetch then returns the row as of `lock`, as a fresh
 *   read racing that change would, and `write`'s compare-and-swap refuses anything based on it.
 * - One trap: a statement reads with the snapshot taken when it started. If the previous holder's
 *   release was still in flight, the INSERT waits for it and then succeeds, but the snapshot may
 *   predate that holder's last write. The statement detects this (its snapshot holds a lock row of
 *   another holder, live at the statement's start) and returns no record then: `read` goes to the database. A holder
 *   that took, wrote and released the lock entirely while our statement ran is not detected; the
 *   compare-and-swap turns that (very unlikely) case into a conflict, never into a lost update.
 * - The record lives in this entry, so it is never served to another acquisition (another holder):
 *   entries are kept per job (see `held`), a new `lock` by the same job replaces its entry, `unlock`
 *   deletes it. It is served once (the first `read` consumes it), dropped by `write` and by every
 *   `lock` call of that job on the subject (also a failed one), so at most one record per held lock
 *   is kept.
 * - The broker's ambient transaction: reads never join it (`read` returns committed state from the
 *   pool, and the prefetch is read on the pool too), and a holder's `unlock` inside it waits until it
 *   settled, so that holder's write is committed before its lock row goes away.
 */
interface HeldLock {
  handle: LockHandle;
  /** The record at acquisition (`null`: none) until the next `read`; `undefined`: read it. */
  prefetched: StateRow | null | undefined;
  /** `changes.count` before the lock statement was sent: the record is stale once it moved. */
  changesSeen: number;
}

/** A row of `MemoryStatements.lockAndRead`: `data` is NULL when there is no record or it was not read. */
type LockAndReadRow = LockRow & { prefetched: boolean } & (StateRow | { data: null; version: null });

/**
 * Workflow state of Arvo orchestrators in PostgreSQL: one JSONB record per orchestration subject
 * with a version for compare-and-swap, TTL locks from `src/lock`, parent/root columns for workflow
 * trees, and retention sweeps. Create it with {@link connectPostgresMachineMemory}.
 *
 * `write` joins the broker's ambient transaction when both use the same database, so the state
 * commits together with the handled job and its output events; `unlock` then waits for that
 * transaction to settle.
 */
export class PostgresMachineMemory<T extends Record<string, any> = any> implements IMachineMemory<T> {
  readonly schema: string;
  readonly tables: Readonly<MemoryTables>;
  private readonly statements: MemoryStatements;
  /** Version of every record object `read` returned or `write` stored, for the compare-and-swap. */
  private readonly versions = new WeakMap<object, { subject: string; version: string }>();
  /**
   * Locks this instance holds, by job (see {@link currentJobScope}; `this` outside any job) and
   * subject: `unlock` releases only the lock its own job took. Keyed by job because two jobs of one
   * process can hold the same subject in turn: when the first outlives its TTL and the second takes
   * the lock over, the first one's late `unlock` must not free the second one's lock.
   */
  private readonly held = new Map<object, Map<string, HeldLock>>();
  private readonly locks: PostgresLock;
  /** Changes of this process to the state table (see {@link HeldLock}). */
  private readonly changes: StateChanges;
  private sweeping: PeriodicTask | undefined;
  private closed = false;

  /** @internal Use {@link connectPostgresMachineMemory}. */
  constructor(
    private readonly config: MemoryConfig,
    private readonly managed: ManagedPool,
    /** Identity of the database, to join an ambient transaction only when it runs there. */
    readonly databaseId: string,
  ) {
    this.schema = config.schema;
    this.tables = Object.freeze({ ...config.tables });
    this.statements = memoryStatements(config.schema, config.tables);
    this.changes = stateChanges(databaseId, qualifiedName(config.schema, config.tables.state));
    this.locks = new PostgresLock({
      pool: managed.pool,
      schema: config.schema,
      table: config.tables.lock,
      migrate: false,
      logger: config.logger,
      enableOtel: config.enableOtel,
      // The memory's own periodic sweep covers the lock rows (see `startSweeping`).
      sweepIntervalMs: 0,
    });
  }

  /** The pool in use. */
  get pool() {
    return this.managed.pool;
  }

  /**
   * The record of `id`, or `null`. The object is remembered so that `write(id, next, it)` can
   * compare-and-swap. The first read after `lock(id)` costs no round trip: it returns the record
   * that `lock` fetched with the lock.
   */
  async read(id: string): Promise<T | null> {
    requireSubject(id);
    return this.run('read', id, async () => {
      const prefetched = this.takePrefetched(id);
      const row: StateRow | null | undefined =
        prefetched !== undefined ? prefetched : (await this.query(this.statements.read, [id])).rows[0];
      if (!row) return null;
      this.versions.set(row.data, { subject: id, version: row.version });
      return row.data as T;
    });
  }

  /**
   * Stores `data` for `id`.
   * - `prevData === null`: creates the record; throws {@link MachineMemoryConflictError} when it
   *   exists — unless `data.executionStatus === 'failure'` (arvo 3 writes failures this way), which
   *   overwrites the record and bumps its version.
   * - otherwise: compare-and-swap against the version of `prevData`, the object `read` (or a previous
   *   `write`) returned; a `prevData` this instance never saw is compared by content (JSONB
   *   equality) instead. Throws {@link MachineMemoryConflictError} when the record changed.
   *
   * `metadata` may carry `source` and `initiator`, stored in their columns: strings, or arvo 3's
   * materialized values (`{ value }` once resolved; a pending one is stored as NULL).
   */
  async write(id: string, data: T, prevData: T | null, metadata?: unknown): Promise<void> {
    requireSubject(id);
    this.dropPrefetched(id);
    requireRecord(data, 'data');
    if (prevData !== null && prevData !== undefined) requireRecord(prevData, 'prevData');
    await this.run('write', id, async () => {
      const meta =
        typeof metadata === 'object' && metadata !== null ? (metadata as Record<string, unknown>) : {};
      let json: string;
      try {
        json = JSON.stringify(data);
      } catch (error) {
        // A BigInt or a cycle can never be stored: say so instead of a TypeError that looks retryable.
        throw new ArvoPostgresError(
          'INVALID_ARGUMENT',
          `Cannot write workflow ${shortSubject(id)}: the record is not JSON-serializable (${describeError(error).message})`,
        );
      }
      const unstorable = jsonUnstorableCharacter(json);
      if (unstorable !== null) {
        // A clear error instead of the driver's 22P02 ("unsupported Unicode escape sequence").
        throw new ArvoPostgresError(
          'INVALID_ARGUMENT',
          `Cannot write workflow ${shortSubject(id)}: the record contains ${unstorable}, which PostgreSQL cannot store`,
        );
      }
      const status = optionalString(data.status);
      const executionStatus = optionalString(data.executionStatus);
      const initiator = metadataString(meta.initiator);
      const source = metadataString(meta.source);
      const parentSubject = optionalString(data.parentSubject);
      // Both are btree keys (`parent_subject`, `(status, updated_at)`): refused by size, not by 54000.
      if (parentSubject !== null)
        requireText(parentSubject, "The record's parentSubject", 'INVALID_ARGUMENT');
      const statusBytes = status === null ? null : oversizedIndexedText(status);
      if (statusBytes !== null) {
        throw new ArvoPostgresError(
          'INVALID_ARGUMENT',
          `Cannot write workflow ${shortSubject(id)}: the record's status ${oversizedIndexedTextReason(statusBytes)}`,
        );
      }
      const tx = ambientTransactionFor(this.databaseId);
      const execute = (statement: NamedStatement, values: unknown[]) => this.change(statement, values, tx);

      let rows: Array<{ version: string }>;
      let expected: string | null = null;
      if (prevData === null || prevData === undefined) {
        const statement =
          executionStatus === 'failure' ? this.statements.insertOrOverwrite : this.statements.insert;
        ({ rows } = await execute(statement, [
          id,
          json,
          parentSubject,
          status,
          executionStatus,
          orchestratorOf(id),
          initiator,
          source,
        ]));
        if (!rows[0]) {
          throw new MachineMemoryConflictError(
            id,
            null,
            `Cannot create workflow ${shortSubject(id)}: a record exists already (write with the record read as prevData)`,
          );
        }
      } else {
        const seen = this.versions.get(prevData);
        // Versions count per record: another workflow's record at the same version must not pass.
        if (seen && seen.subject !== id) {
          throw new MachineMemoryConflictError(
            id,
            null,
            `Cannot write workflow ${shortSubject(id)}: prevData is the record of another workflow (${shortSubject(seen.subject)})`,
          );
        }
        const known = seen?.version;
        expected = known ?? null;
        ({ rows } = await execute(
          known !== undefined ? this.statements.updateByVersion : this.statements.updateByContent,
          [id, json, known ?? JSON.stringify(prevData), status, executionStatus, initiator, source],
        ));
        if (!rows[0]) {
          throw new MachineMemoryConflictError(
            id,
            expected,
            known !== undefined
              ? `Workflow ${shortSubject(id)} changed since it was read (expected version ${known}), or was deleted`
              : `Workflow ${shortSubject(id)} no longer matches prevData (changed since read, or deleted)`,
          );
        }
      }
      this.versions.set(data, { subject: id, version: rows[0].version });

      if (
        this.config.cleanupOnCompletion &&
        parentSubject === null &&
        isFinishedWorkflow(status, executionStatus)
      ) {
        await execute(this.statements.deleteTree, [id]);
      }
    });
  }

  /**
   * Takes the lock on `id` for this instance, retrying with backoff (no connection is held while
   * waiting). `false` when another holder kept it through every attempt. The statement that takes
   * the lock also reads the record, for the next `read` (see {@link HeldLock}).
   */
  async lock(id: string): Promise<boolean> {
    requireSubject(id);
    this.dropPrefetched(id);
    return this.run('lock', id, async () => {
      const held = await retryWithBackoff(this.config.lockRetry, () => this.lockAndRead(id));
      if (!held) return false;
      this.heldInThisJob(true).set(id, held);
      return true;
    });
  }

  /**
   * Releases the lock this instance holds on `id`; `false` when it holds none (or lost it to a TTL
   * takeover). Inside an ambient transaction of the same database the release waits until that
   * transaction settled, so nobody reads state that is not committed yet; it then returns `true`.
   */
  async unlock(id: string): Promise<boolean> {
    requireSubject(id);
    const job = this.currentJob();
    const held = this.held.get(job);
    const handle = held?.get(id)?.handle;
    if (!held || !handle) return false;
    held.delete(id);
    if (held.size === 0) this.held.delete(job);
    const tx = ambientTransactionFor(this.databaseId);
    if (tx) {
      tx.onSettled(() =>
        this.locks.release(handle).then(
          () => undefined,
          (error: unknown) => {
            writeLog(
              this.config.logger,
              'warn',
              'arvo-postgres: deferred unlock failed; the lock expires with its TTL',
              {
                error: describeError(error),
              },
            );
          },
        ),
      );
      return true;
    }
    return this.run('unlock', id, () => this.locks.release(handle));
  }

  /**
   * The completion hook arvo 3 orchestrators call when workflow `subject` reaches a final state. It
   * applies the configured completion policy and nothing more: with `cleanup.onCompletion` (default
   * `false`) it deletes the tree of `subject` when that is a root with a finished status; otherwise it
   * returns without touching the database, so finished workflows are kept (as with
   * `@arvo-tools/postgres`'s `enableCleanup: false`). To delete on demand, use {@link deleteWorkflow}.
   * Inside the broker's transaction of the same database the deletion commits with the job.
   */
  async cleanup(subject: string): Promise<void> {
    requireSubject(subject);
    if (!this.config.cleanupOnCompletion) return;
    await this.run('cleanup', subject, () =>
      this.changeInJob(this.statements.deleteFinishedRootTree, [subject]),
    );
  }

  /**
   * Deletes the record of `subject` and all its descendants now, whatever their status and the
   * completion policy; returns how many records were deleted. Inside the broker's transaction of the
   * same database the deletion commits with the job.
   */
  async deleteWorkflow(subject: string): Promise<number> {
    requireSubject(subject);
    return this.run('delete_workflow', subject, async () => {
      const { rowCount } = await this.changeInJob(this.statements.deleteTree, [subject]);
      return rowCount ?? 0;
    });
  }

  /** The root of `subject`'s workflow tree (itself for a root), or `null` when it has no record. */
  async getRootSubject(subject: string): Promise<string | null> {
    requireSubject(subject);
    return this.run('get_root_subject', subject, async () => {
      const { rows } = await this.pool.query(this.statements.rootOf, [subject]);
      return rows[0]?.root_subject ?? null;
    });
  }

  /**
   * The descendants of `root` (children, grandchildren, …), oldest first, **without** the root itself,
   * as `@arvo-tools/postgres` returns them: `[]` for a root without children and for an unknown
   * subject. Whether the root itself has a record: `getRootSubject(root) === root`.
   */
  async getSubjectsByRoot(root: string): Promise<string[]> {
    requireSubject(root);
    return this.run('get_subjects_by_root', root, async () => {
      const { rows } = await this.pool.query(this.statements.subjectsByRoot, [root]);
      return rows.map((row) => row.subject as string);
    });
  }

  /**
   * Deletes whole workflow trees: those whose root finished more than `olderThanMs` ago (default
   * `retention.finishedAfterMs`) and those with no write for `abandonedOlderThanMs` (default
   * `retention.abandonedAfterMs`); plus expired lock rows. An age left undefined is not swept.
   */
  async sweep(
    options: { olderThanMs?: number; abandonedOlderThanMs?: number; batchSize?: number } = {},
  ): Promise<MemorySweepResult> {
    const given = expectObject(options, 'sweep.options');
    expectKnownKeys(given, ['olderThanMs', 'abandonedOlderThanMs', 'batchSize'], 'sweep.options');
    const age = (key: string, fallback: number | undefined) =>
      given[key] === undefined
        ? fallback
        : integerOption(given[key], `sweep.options.${key}`, AGE_RANGE_MS, 0);
    const finishedAge = age('olderThanMs', this.config.finishedAfterMs);
    const abandonedAge = age('abandonedOlderThanMs', this.config.abandonedAfterMs);
    const batchSize = integerOption(
      given.batchSize,
      'sweep.options.batchSize',
      { min: 1, max: 100_000 },
      500,
    );
    return this.run('sweep', '', async () => {
      const result: MemorySweepResult = {
        finishedTrees: 0,
        abandonedTrees: 0,
        deletedRecords: 0,
        expiredLocks: 0,
      };
      const sweepTrees = async (statement: string, ageMs: number): Promise<number> => {
        let trees = 0;
        for (;;) {
          const { rows } = await this.change(statement, [ageMs, batchSize]);
          const roots = new Set(rows.map((row) => row.root_subject as string)).size;
          trees += roots;
          result.deletedRecords += rows.length;
          // Closing stops a long sweep between batches (close() waits for the batch in flight).
          if (roots < batchSize || this.closed) return trees;
        }
      };
      if (finishedAge !== undefined)
        result.finishedTrees = await sweepTrees(this.statements.sweepFinished, finishedAge);
      if (abandonedAge !== undefined) {
        result.abandonedTrees = await sweepTrees(this.statements.sweepAbandoned, abandonedAge);
      }
      if (!this.closed) result.expiredLocks = await this.locks.sweepExpired();
      return result;
    });
  }

  /**
   * Checks that both tables exist in the configured Postgres schema with the columns, types,
   * nullability and primary keys of layout version 1. Throws {@link MachineMemoryTableStructureError}
   * naming every problem found.
   */
  async validateTableStructure(): Promise<void> {
    await this.run('validate_table_structure', '', async () => {
      const names = [this.tables.state, this.tables.lock];
      const [columns, keys, anywhere] = await Promise.all([
        this.pool.query(this.statements.columns, [this.schema, names]),
        this.pool.query(this.statements.primaryKeys, [this.schema, names]),
        this.pool.query(this.statements.tablesAnywhere, [names]),
      ]);
      const problems: string[] = [];
      const check = (table: string, expected: readonly MigrationColumn[]) => {
        const primaryKey = expected
          .filter((column) => column.primaryKey)
          .map((column) => column.name)
          .join(',');
        const where = `${this.schema}.${table}`;
        const actual = columns.rows.filter((row) => row.table_name === table);
        if (actual.length === 0) {
          const elsewhere = anywhere.rows
            .filter((row) => row.table_name === table && row.table_schema !== this.schema)
            .map((row) => row.table_schema);
          problems.push(
            `table ${where} does not exist${elsewhere.length ? ` (a table of that name exists in schema ${elsewhere.join(', ')})` : ''}`,
          );
          return;
        }
        for (const column of expected) {
          const found = actual.find((row) => row.column_name === column.name);
          if (!found) {
            problems.push(`column ${where}.${column.name} is missing (expected ${column.type})`);
            continue;
          }
          if (found.data_type !== column.type) {
            problems.push(
              `column ${where}.${column.name} has type ${found.data_type}, expected ${column.type}`,
            );
          }
          const nullable = found.is_nullable === 'YES';
          if (nullable !== column.nullable) {
            problems.push(
              `column ${where}.${column.name} is ${nullable ? 'nullable' : 'NOT NULL'}, expected ${column.nullable ? 'nullable' : 'NOT NULL'}`,
            );
          }
        }
        const key = keys.rows.find((row) => row.table_name === table)?.columns as string[] | undefined;
        if (!key) problems.push(`table ${where} has no primary key, expected PRIMARY KEY (${primaryKey})`);
        else if (key.join(',') !== primaryKey) {
          problems.push(
            `table ${where} has PRIMARY KEY (${key.join(', ')}), expected PRIMARY KEY (${primaryKey})`,
          );
        }
      };
      check(this.tables.state, STATE_COLUMNS_V1);
      check(this.tables.lock, LOCK_COLUMNS_V1);
      if (problems.length > 0) throw new MachineMemoryTableStructureError(problems);
    });
  }

  /**
   * Stops the periodic sweep, releases the locks this instance holds, waits for a sweep in progress
   * (it stops after its current batch) and ends the pool if the memory created it.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sweepEnded = this.sweeping?.stop();
    const handles = [...this.held.values()].flatMap((byJob) =>
      [...byJob.values()].map((held) => held.handle),
    );
    this.held.clear();
    await Promise.all(handles.map((handle) => this.locks.release(handle).catch(() => false)));
    // Closing the lock ends a lock-row sweep between batches; it never ends the memory's pool.
    await this.locks.close();
    await sweepEnded;
    await closePool(this.managed);
  }

  /**
   * @internal Starts the one periodic sweep (called by `connectPostgresMachineMemory`): the retention
   * sweep, which deletes expired lock rows too, when configured; otherwise expired lock rows alone
   * every minute (only holders that crashed leave them behind, and `lock` takes them over anyway).
   */
  startSweeping(): void {
    const { sweepIntervalMs, logger } = this.config;
    this.sweeping =
      sweepIntervalMs > 0
        ? startPeriodic(
            sweepIntervalMs,
            () => this.sweep(),
            logger,
            'arvo-postgres: workflow retention sweep failed',
          )
        : startPeriodic(
            LOCK_SWEEP_INTERVAL_MS,
            () => this.locks.sweepExpired(),
            logger,
            'arvo-postgres: sweeping expired workflow locks failed',
          );
  }

  /** One attempt to take the lock on `id`, reading the record in the same statement. */
  private async lockAndRead(id: string): Promise<HeldLock | null> {
    const changesSeen = this.changes.count;
    const { rows } = await this.query(this.statements.lockAndRead, [
      id,
      randomUUID(),
      this.config.lockRetry.ttlMs,
    ]);
    const row: LockAndReadRow | undefined = rows[0];
    if (!row) return null;
    let prefetched: HeldLock['prefetched'];
    if (row.prefetched) prefetched = row.data === null ? null : { data: row.data, version: row.version };
    return { handle: lockHandleFromRow(row), prefetched, changesSeen };
  }

  /** The record `lock(id)` fetched (`null`: none), consumed; `undefined` when there is none to serve. */
  private takePrefetched(id: string): StateRow | null | undefined {
    const held = this.heldInThisJob(false)?.get(id);
    if (!held) return undefined;
    const { prefetched, changesSeen } = held;
    held.prefetched = undefined;
    return changesSeen === this.changes.count ? prefetched : undefined;
  }

  private dropPrefetched(id: string): void {
    const held = this.heldInThisJob(false)?.get(id);
    if (held) held.prefetched = undefined;
  }

  /** The key of `held` for the caller: its broker job, or this instance outside any job. */
  private currentJob(): object {
    return currentJobScope() ?? this;
  }

  /** The locks held by the current job (see `held`), created on demand when `create`. */
  private heldInThisJob(create: true): Map<string, HeldLock>;
  private heldInThisJob(create: false): Map<string, HeldLock> | undefined;
  private heldInThisJob(create: boolean): Map<string, HeldLock> | undefined {
    const job = this.currentJob();
    let held = this.held.get(job);
    if (!held && create) {
      held = new Map();
      this.held.set(job, held);
    }
    return held;
  }

  /**
   * Runs a statement that changes state rows, through `tx` when given, and counts the change when it
   * returns and again when `tx` settles. Every such statement runs through here (see {@link HeldLock}).
   */
  private async change(
    statement: NamedStatement | string,
    values: unknown[],
    tx?: AmbientTransaction,
  ): Promise<{ rows: any[]; rowCount?: number | null }> {
    try {
      if (tx) return await tx.query(statement, values);
      return typeof statement === 'string'
        ? await this.pool.query(statement, values)
        : await this.query(statement, values);
    } finally {
      this.changes.count++;
      tx?.onSettled(() => {
        this.changes.count++;
      });
    }
  }

  private query(statement: NamedStatement, values: unknown[]) {
    return this.pool.query({ name: statement.name, text: statement.text, values });
  }

  /**
   * {@link change} in the broker's ambient transaction when it runs in this database, else on the
   * pool. On the pool it would wait for the row locks that very transaction holds until it ends.
   */
  private changeInJob(statement: NamedStatement, values: unknown[]) {
    return this.change(statement, values, ambientTransactionFor(this.databaseId));
  }

  private async run<R>(operation: string, subject: string, fn: () => Promise<R>): Promise<R> {
    if (this.closed) throw new ArvoPostgresError('MEMORY_CLOSED', `Machine memory is closed (${operation})`);
    return runOperation(
      this.config.enableOtel,
      `arvo-postgres.memory.${operation}`,
      subject ? { 'arvo_postgres.memory.subject': subject } : {},
      fn,
    );
  }
}

/**
 * Connects a {@link PostgresMachineMemory}: validates `options` (an {@link InvalidOptionError} names
 * the bad option), migrates per `options.migrate`, checks the table structure and starts the
 * retention sweep when configured. `@arvo-tools/postgres`'s options (`{ version: 1, config, … }`)
 * are accepted too, with a deprecation warning (see {@link ArvoToolsMachineMemoryOptions}).
 *
 * `T` is the record type. Without a type argument records are `any`, so the memory is assignable to
 * any orchestrator's `IMachineMemory<MachineMemoryRecord>` (arvo-xstate 2, arvo 3); pass the record
 * type (`connectPostgresMachineMemory<MyRecord>(…)`) for typed reads.
 */
export async function connectPostgresMachineMemory<T extends Record<string, any> = any>(
  options: PostgresMachineMemoryOptions | ArvoToolsMachineMemoryOptions,
): Promise<PostgresMachineMemory<T>> {
  const config = isArvoToolsOptions(options)
    ? resolveArvoToolsOptions(options, resolveMemoryOptions)
    : resolveMemoryOptions(options);
  const managed = openPool(config.connection, config.logger);
  try {
    const databaseId = await readDatabaseId(managed.pool);
    await migrateMemoryTables(managed.pool, config.schema, config.tables, config.migrate);
    const memory = new PostgresMachineMemory<T>(config, managed, databaseId);
    await memory.validateTableStructure();
    memory.startSweeping();
    return memory;
  } catch (error) {
    await closePool(managed).catch(() => {});
    throw redactError(error);
  }
}

/** Closes `memory` (see {@link PostgresMachineMemory.close}). */
export async function releasePostgresMachineMemory(memory: PostgresMachineMemory<any>): Promise<void> {
  await memory.close();
}

/** @deprecated `@arvo-tools/postgres`'s spelling of {@link releasePostgresMachineMemory}. */
export const releasePostgressMachineMemory = releasePostgresMachineMemory;
