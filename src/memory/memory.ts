import { randomUUID } from 'node:crypto';
import { PostgresLock } from '../lock/lock';
import { retryWithBackoff } from '../shared/backoff';
import { ArvoPostgresError } from '../shared/errors';
import { qualifiedName } from '../shared/identifiers';
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import { closePool, type ManagedPool, openPool } from '../shared/pool';
import { redactError } from '../shared/redact';
import { tableStructureProblems } from '../shared/table-structure';
import { runOperation } from '../shared/telemetry';
import { type AmbientTransaction, ambientTransactionFor, readDatabaseId } from '../shared/transaction';
import {
  type ArvoToolsMachineMemoryOptions,
  isArvoToolsOptions,
  resolveArvoToolsOptions,
} from './arvo-tools-options';
import { MachineMemoryConflictError, MachineMemoryTableStructureError } from './errors';
import { HeldLocks, type LockAndReadRow, lockInJob, type StateRow } from './held-locks';
import type { MemoryTables } from './migrations/v1';
import {
  type MemoryConfig,
  type PostgresMachineMemoryOptions,
  requireSubject,
  resolveMemoryOptions,
  resolveSweepOptions,
} from './options';
import { orchestratorOf, recordColumns, requireRecord, shortSubject } from './records';
import { memoryTableColumns, migrateMemoryTables } from './schema';
import { isFinishedWorkflow, type MemoryStatements, memoryStatements, type NamedStatement } from './sql';
import type { IMachineMemory, MemorySweepResult } from './types';

/** Period of the lock-row sweep when no retention sweep runs. */
const LOCK_SWEEP_INTERVAL_MS = 60_000;

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
  /** Identity of the database, to join an ambient transaction only when it runs there. */
  readonly databaseId: string;
  readonly #config: MemoryConfig;
  readonly #managed: ManagedPool;
  readonly #statements: MemoryStatements;
  /** Version of every record object `read` returned or `write` stored, for the compare-and-swap. */
  readonly #versions = new WeakMap<object, { subject: string; version: string }>();
  readonly #held: HeldLocks;
  readonly #locks: PostgresLock;
  #sweeping: PeriodicTask | undefined;
  #closed = false;

  /** @internal Use {@link connectPostgresMachineMemory}. */
  constructor(config: MemoryConfig, managed: ManagedPool, databaseId: string) {
    this.#config = config;
    this.#managed = managed;
    this.databaseId = databaseId;
    this.schema = config.schema;
    this.tables = Object.freeze({ ...config.tables });
    this.#statements = memoryStatements(config.schema, config.tables);
    this.#held = new HeldLocks(databaseId, qualifiedName(config.schema, config.tables.state));
    this.#locks = new PostgresLock({
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
    return this.#managed.pool;
  }

  /**
   * The record of `id`, or `null`. The object is remembered so that `write(id, next, it)` can
   * compare-and-swap. The first read after `lock(id)` costs no round trip: it returns the record
   * that `lock` fetched with the lock.
   */
  async read(id: string): Promise<T | null> {
    requireSubject(id);
    return this.#run('read', id, async () => {
      const prefetched = this.#held.takePrefetched(id);
      // Inside a job its transaction holds the lock and a connection: a read on the pool could wait for a
      // connection that jobs holding locks never give back.
      const tx = ambientTransactionFor(this.databaseId);
      const fresh = async () =>
        (await (tx ? tx.query(this.#statements.read, [id]) : this.#query(this.#statements.read, [id])))
          .rows[0];
      const row: StateRow | null | undefined = prefetched !== undefined ? prefetched : await fresh();
      if (!row) return null;
      this.#versions.set(row.data, { subject: id, version: row.version });
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
    this.#held.dropPrefetched(id);
    requireRecord(data, 'data');
    if (prevData !== null && prevData !== undefined) requireRecord(prevData, 'prevData');
    await this.#run('write', id, async () => {
      const { json, status, executionStatus, parentSubject, initiator, source } = recordColumns(
        id,
        data,
        metadata,
      );
      const tx = ambientTransactionFor(this.databaseId);
      const execute = (statement: NamedStatement, values: unknown[]) =>
        this.#change(statement, values, tx, id);

      let rows: Array<{ version: string }>;
      if (prevData === null || prevData === undefined) {
        const statement =
          executionStatus === 'failure' ? this.#statements.insertOrOverwrite : this.#statements.insert;
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
        const seen = this.#versions.get(prevData);
        // Versions count per record: another workflow's record at the same version must not pass.
        if (seen && seen.subject !== id) {
          throw new MachineMemoryConflictError(
            id,
            null,
            `Cannot write workflow ${shortSubject(id)}: prevData is the record of another workflow (${shortSubject(seen.subject)})`,
          );
        }
        const known = seen?.version;
        ({ rows } = await execute(
          known !== undefined ? this.#statements.updateByVersion : this.#statements.updateByContent,
          [id, json, known ?? JSON.stringify(prevData), status, executionStatus, initiator, source],
        ));
        if (!rows[0]) {
          throw new MachineMemoryConflictError(
            id,
            known ?? null,
            known !== undefined
              ? `Workflow ${shortSubject(id)} changed since it was read (expected version ${known}), or was deleted`
              : `Workflow ${shortSubject(id)} no longer matches prevData (changed since read, or deleted)`,
          );
        }
      }
      this.#versions.set(data, { subject: id, version: rows[0].version });

      if (
        this.#config.cleanupOnCompletion &&
        parentSubject === null &&
        isFinishedWorkflow(status, executionStatus)
      ) {
        await this.#change(this.#statements.deleteTree, [id], tx);
      }
    });
  }

  /**
   * Takes the lock on `id` for this instance, retrying with backoff (no connection is held while
   * waiting). `false` when another holder kept it through every attempt. The statement that takes
   * the lock also reads the record, for the next `read` (see docs/design.md, "Memory").
   */
  async lock(id: string): Promise<boolean> {
    requireSubject(id);
    this.#held.dropPrefetched(id);
    return this.#run('lock', id, async () => {
      const taken = await retryWithBackoff(this.#config.lockRetry, () => this.#lockAndRead(id));
      if (!taken) return false;
      this.#held.hold(id, taken.row, taken.changesSeen);
      return true;
    });
  }

  /**
   * Releases the lock this instance holds on `id`; `false` when it holds none (or lost it to a TTL
   * takeover). A lock taken inside a broker job on this database is the job's transaction's: it ends
   * when the job commits or rolls back, so nobody reads state that is not committed yet.
   */
  async unlock(id: string): Promise<boolean> {
    requireSubject(id);
    const handle = this.#held.forget(id);
    if (!handle) return handle === null;
    return this.#run('unlock', id, () => this.#locks.release(handle));
  }

  /**
   * arvo 3's completion hook for workflow `subject`: with `cleanup.onCompletion` (default `false`) it
   * deletes the tree of `subject` when that is a finished root, else it does nothing. To delete on
   * demand, use {@link deleteWorkflow}. Inside the broker's transaction it commits with the job.
   */
  async cleanup(subject: string): Promise<void> {
    requireSubject(subject);
    if (!this.#config.cleanupOnCompletion) return;
    await this.#run('cleanup', subject, () =>
      this.#changeInJob(this.#statements.deleteFinishedRootTree, [subject]),
    );
  }

  /**
   * Deletes the record of `subject` and all its descendants now, whatever their status; returns how
   * many records were deleted. Inside the broker's transaction it commits with the job.
   */
  async deleteWorkflow(subject: string): Promise<number> {
    requireSubject(subject);
    return this.#run('delete_workflow', subject, async () => {
      const { rowCount } = await this.#changeInJob(this.#statements.deleteTree, [subject]);
      return rowCount ?? 0;
    });
  }

  /** The root of `subject`'s workflow tree (itself for a root), or `null` when it has no record. */
  async getRootSubject(subject: string): Promise<string | null> {
    requireSubject(subject);
    return this.#run('get_root_subject', subject, async () => {
      const { rows } = await this.pool.query(this.#statements.rootOf, [subject]);
      return rows[0]?.root_subject ?? null;
    });
  }

  /**
   * The descendants of `root`, oldest first, **without** the root itself (as `@arvo-tools/postgres`):
   * `[]` for a root without children and for an unknown subject.
   */
  async getSubjectsByRoot(root: string): Promise<string[]> {
    requireSubject(root);
    return this.#run('get_subjects_by_root', root, async () => {
      const { rows } = await this.pool.query(this.#statements.subjectsByRoot, [root]);
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
    const { finishedAge, abandonedAge, batchSize } = resolveSweepOptions(options, this.#config);
    return this.#run('sweep', '', async () => {
      const result: MemorySweepResult = {
        finishedTrees: 0,
        abandonedTrees: 0,
        deletedRecords: 0,
        expiredLocks: 0,
      };
      const sweepTrees = async (statement: string, ageMs: number): Promise<number> => {
        let trees = 0;
        for (;;) {
          const { rows } = await this.#change(statement, [ageMs, batchSize]);
          const roots = new Set(rows.map((row) => row.root_subject as string)).size;
          trees += roots;
          result.deletedRecords += rows.length;
          // Closing stops a long sweep between batches (close() waits for the batch in flight).
          if (roots < batchSize || this.#closed) return trees;
        }
      };
      if (finishedAge !== undefined)
        result.finishedTrees = await sweepTrees(this.#statements.sweepFinished, finishedAge);
      if (abandonedAge !== undefined) {
        result.abandonedTrees = await sweepTrees(this.#statements.sweepAbandoned, abandonedAge);
      }
      if (!this.#closed) result.expiredLocks = await this.#locks.sweepExpired();
      return result;
    });
  }

  /**
   * Checks that both tables exist in the configured Postgres schema with the columns, types,
   * nullability and primary keys of layout version 1. Throws {@link MachineMemoryTableStructureError}
   * naming every problem found.
   */
  async validateTableStructure(): Promise<void> {
    await this.#run('validate_table_structure', '', async () => {
      const problems = await tableStructureProblems(this.pool, this.schema, memoryTableColumns(this.tables));
      if (problems.length > 0) throw new MachineMemoryTableStructureError(problems);
    });
  }

  /**
   * Stops the periodic sweep, releases the locks this instance holds, waits for a sweep in progress
   * (it stops after its current batch) and ends the pool if the memory created it.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const sweepEnded = this.#sweeping?.stop();
    const handles = this.#held.forgetAll();
    await Promise.all(handles.map((handle) => this.#locks.release(handle).catch(() => false)));
    // Closing the lock ends a lock-row sweep between batches; it never ends the memory's pool.
    await this.#locks.close();
    await sweepEnded;
    await closePool(this.#managed);
  }

  /**
   * @internal Starts the one periodic sweep (called by `connectPostgresMachineMemory`): the retention
   * sweep, which deletes expired lock rows too, when configured; otherwise expired lock rows alone
   * every minute (only holders that crashed leave them behind, and `lock` takes them over anyway).
   */
  startSweeping(): void {
    const { sweepIntervalMs, logger } = this.#config;
    const retention = sweepIntervalMs > 0;
    this.#sweeping = startPeriodic(
      retention ? sweepIntervalMs : LOCK_SWEEP_INTERVAL_MS,
      () => (retention ? this.sweep() : this.#locks.sweepExpired()),
      logger,
      retention
        ? 'arvo-postgres: workflow retention sweep failed'
        : 'arvo-postgres: sweeping expired workflow locks failed',
    );
  }

  /** One attempt to lock `id` and read its record: a job lock inside a broker job on this database, else a lock row. */
  async #lockAndRead(id: string): Promise<{ row: LockAndReadRow; changesSeen: number } | null> {
    const changesSeen = this.#held.changesOf(id);
    const tx = ambientTransactionFor(this.databaseId);
    const rows = tx
      ? await lockInJob(tx, this.#statements, id)
      : (await this.#query(this.#statements.lockAndRead, [id, randomUUID(), this.#config.lockRetry.ttlMs]))
          .rows;
    const row: LockAndReadRow | undefined = rows[0];
    return row ? { row, changesSeen } : null;
  }

  /**
   * Runs a statement that changes state rows, through `tx` when given, and counts the change when it
   * returns and again when `tx` settles: of `subject`'s row when the statement changes that row only,
   * else of any rows. Every such statement runs through here (docs/design.md, "Memory").
   */
  async #change(
    statement: NamedStatement | string,
    values: unknown[],
    tx?: AmbientTransaction,
    subject?: string,
  ): Promise<{ rows: any[]; rowCount?: number | null }> {
    try {
      if (tx) return await tx.query(statement, values);
      return typeof statement === 'string'
        ? await this.pool.query(statement, values)
        : await this.#query(statement, values);
    } finally {
      this.#held.countChange(tx, subject);
    }
  }

  /**
   * {@link change} in the broker's ambient transaction when it runs in this database, else on the
   * pool. On the pool it would wait for the row locks that very transaction holds until it ends.
   */
  #changeInJob(statement: NamedStatement, values: unknown[]) {
    return this.#change(statement, values, ambientTransactionFor(this.databaseId));
  }

  #query(statement: NamedStatement, values: unknown[]) {
    return this.pool.query({ name: statement.name, text: statement.text, values });
  }

  async #run<R>(operation: string, subject: string, fn: () => Promise<R>): Promise<R> {
    if (this.#closed) throw new ArvoPostgresError('MEMORY_CLOSED', `Machine memory is closed (${operation})`);
    return runOperation(
      this.#config.enableOtel,
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
