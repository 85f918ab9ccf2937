import { type LockHandle, type LockRow, lockHandleFromRow } from '../lock/handle';
import { type AmbientTransaction, currentJobScope } from '../shared/transaction';
import type { NamedStatement } from './sql';

/** A stored record and its version, as the read statements return it. */
export interface StateRow {
  data: Record<string, any>;
  version: string;
}

/**
 * A row of `MemoryStatements.lockAndRead` (or `readInJob`, whose `owner` is NULL: the lock is the job
 * transaction's): `data` is NULL when there is no record or it was not read.
 */
export type LockAndReadRow = (LockRow | { owner: null }) & { prefetched: boolean } & (
    | StateRow
    | { data: null; version: null }
  );

/**
 * One attempt to lock `id` inside the broker job `tx` runs, with no commit of its own: the job lock
 * (a transaction-scoped advisory lock, released when the job commits or rolls back), then, in a
 * fresh snapshot, the check that no live lock row is held and the record. No row when either is held
 * (a job lock that was taken is kept until the job ends: it cannot be released earlier).
 */
export async function lockInJob(
  tx: AmbientTransaction,
  statements: { lockInJob: NamedStatement; readInJob: NamedStatement },
  id: string,
): Promise<LockAndReadRow[]> {
  const { rows } = await tx.query(statements.lockInJob, [id]);
  if (!rows[0]?.locked) return [];
  return (await tx.query(statements.readInJob, [id])).rows;
}

/**
 * A lock a memory holds, and the subject's record read by the statement that took it, kept for the
 * next `read`. Why serving it is as safe as a fresh read: docs/design.md, "Held locks and the record
 * read with the lock".
 */
interface HeldLock {
  /** The lock row's handle; `null`: the job's transaction holds the lock and ends it. */
  handle: LockHandle | null;
  /** The record at acquisition (`null`: none) until the next `read`; `undefined`: read it. */
  prefetched: StateRow | null | undefined;
  /** The subject's change version before the lock statement was sent: the record is stale once it moved. */
  changesSeen: number;
}

/** Subjects whose changes are told apart one by one; past that many, all are treated as changed once. */
const SUBJECTS_TRACKED = 10_000;

/**
 * Changes this process made to one state table (see {@link stateChanges}): a change of one subject's
 * row moves that subject's version only, so a record prefetched under load is not dropped because
 * other workflows were written meanwhile; a change of many rows (a tree deleted, a sweep) moves
 * every subject's.
 */
export class StateChanges {
  #sequence = 0;
  /** The version every subject has at least. */
  #floor = 0;
  readonly #bySubject = new Map<string, number>();

  /** A number that moves whenever `subject`'s row may have changed: compare it before and after. */
  versionOf(subject: string): number {
    return Math.max(this.#bySubject.get(subject) ?? 0, this.#floor);
  }

  /** Counts a change of `subject`'s row, or of any rows when `subject` is undefined. */
  changed(subject?: string): void {
    this.#sequence++;
    if (subject === undefined || this.#bySubject.size >= SUBJECTS_TRACKED) {
      // Forgetting the subjects is safe because the floor moves past every version they had.
      this.#bySubject.clear();
      this.#floor = this.#sequence;
    } else {
      this.#bySubject.set(subject, this.#sequence);
    }
  }
}

const changesByTable = new Map<string, StateChanges>();

/**
 * The changes of the state table `table` of database `databaseId`, shared by every memory of this
 * process on that table: each statement that changes its rows counts when it returns and again when
 * its transaction settles.
 */
function stateChanges(databaseId: string, table: string): StateChanges {
  const key = `${databaseId} ${table}`;
  let changes = changesByTable.get(key);
  if (!changes) {
    changes = new StateChanges();
    changesByTable.set(key, changes);
  }
  return changes;
}

/**
 * The locks one memory holds, by job (the broker job running, else this memory) and subject, with the
 * record each lock statement read; and the change count of the state table that says when such a
 * record is stale. Keyed by job: see docs/design.md, "Held locks are kept per job".
 */
export class HeldLocks {
  readonly #byJob = new Map<object, Map<string, HeldLock>>();
  readonly #changes: StateChanges;

  /** `table`: the qualified state table of database `databaseId`. */
  constructor(databaseId: string, table: string) {
    this.#changes = stateChanges(databaseId, table);
  }

  /** The change version of `id` now: read it before sending a lock statement, pass it to {@link hold}. */
  changesOf(id: string): number {
    return this.#changes.versionOf(id);
  }

  /**
   * Counts a change of `subject`'s row (of any rows when undefined) now, and again when `tx` (if any)
   * settles.
   */
  countChange(tx: AmbientTransaction | undefined, subject?: string): void {
    this.#changes.changed(subject);
    tx?.onSettled(() => this.#changes.changed(subject));
  }

  /** Records the lock a `lockAndRead` row took, for the current job; `changesSeen` as {@link changesOf} before it. */
  hold(id: string, row: LockAndReadRow, changesSeen: number): void {
    let prefetched: HeldLock['prefetched'];
    if (row.prefetched) prefetched = row.data === null ? null : { data: row.data, version: row.version };
    const handle = row.owner === null ? null : lockHandleFromRow(row);
    this.#inThisJob(true).set(id, { handle, prefetched, changesSeen });
  }

  /** The record `lock(id)` fetched (`null`: none), consumed; `undefined` when there is none to serve. */
  takePrefetched(id: string): StateRow | null | undefined {
    const held = this.#inThisJob(false)?.get(id);
    if (!held) return undefined;
    const { prefetched, changesSeen } = held;
    held.prefetched = undefined;
    return changesSeen === this.#changes.versionOf(id) ? prefetched : undefined;
  }

  dropPrefetched(id: string): void {
    const held = this.#inThisJob(false)?.get(id);
    if (held) held.prefetched = undefined;
  }

  /**
   * Forgets the current job's lock on `id` and returns its handle (`null`: a job lock, nothing to
   * release); `undefined` when it holds none.
   */
  forget(id: string): LockHandle | null | undefined {
    const job = this.#currentJob();
    const held = this.#byJob.get(job);
    const lock = held?.get(id);
    if (!held || !lock) return undefined;
    held.delete(id);
    if (held.size === 0) this.#byJob.delete(job);
    return lock.handle;
  }

  /** Forgets every lock, of every job, and returns the handles of the lock rows among them. */
  forgetAll(): LockHandle[] {
    const handles = [...this.#byJob.values()].flatMap((byId) =>
      [...byId.values()].flatMap((held) => (held.handle ? [held.handle] : [])),
    );
    this.#byJob.clear();
    return handles;
  }

  /** The key of the caller's locks: its broker job, or this instance outside any job. */
  #currentJob(): object {
    return currentJobScope() ?? this;
  }

  #inThisJob(create: true): Map<string, HeldLock>;
  #inThisJob(create: false): Map<string, HeldLock> | undefined;
  #inThisJob(create: boolean): Map<string, HeldLock> | undefined {
    const job = this.#currentJob();
    let held = this.#byJob.get(job);
    if (!held && create) {
      held = new Map();
      this.#byJob.set(job, held);
    }
    return held;
  }
}
