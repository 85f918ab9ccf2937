import type pg from 'pg';
import {
  type AmbientTransaction,
  beginTransaction,
  releaseClient,
  runSettledCallbacks,
} from '../shared/transaction';
import { BatchRolledBackError } from './errors';
import type { HistoryEntry, HistoryRecorder } from './history';
import type { FetchedJob, JobInsert, PgBossClient } from './pgboss';

/**
 * How long the jobs of a batch that are done wait for their slower neighbours before they commit
 * without them: bounds the latency one slow handler adds to the others (docs/design.md, "One
 * transaction per hop, one commit per batch").
 */
const LINGER_MS = 20;

/** What a handled job leaves to its batch's commit: its outputs by destination queue and its history entry. */
export interface HandledJob {
  job: FetchedJob;
  inserts: Map<string, JobInsert[]>;
  history: HistoryEntry | null;
}

type Statement = string | { name: string; text: string };
type SettledCallback = () => void | Promise<void>;

/**
 * One fetched batch's database transaction, shared by its jobs, so the batch commits once
 * (docs/design.md, "One transaction per hop, one commit per batch"). Handlers still run concurrently;
 * a job that touches the database takes the transaction's connection for the rest of its run (so jobs
 * of one subject run one after the other, whatever its re-entrant advisory locks say) inside a
 * savepoint of its own, and a failed job rolls back to it: it never fails or loses its neighbours. The outputs,
 * history entries and completions of the jobs that are done are written together, one statement per
 * destination queue, and committed once every job is done (or {@link LINGER_MS} after the first).
 */
export class JobBatch {
  readonly databaseId: string;
  readonly #connection: BatchConnection;
  readonly #boss: PgBossClient;
  readonly #history: HistoryRecorder;
  readonly #queue: string;
  /** Jobs that have not reported (done or abandoned) yet. */
  #outstanding: number;
  #done: DoneJob[] = [];
  #linger: NodeJS.Timeout | undefined;

  constructor(
    parts: { pool: pg.Pool; databaseId: string; boss: PgBossClient; history: HistoryRecorder },
    queue: string,
    size: number,
    onCallbackError: (error: unknown) => void,
  ) {
    this.databaseId = parts.databaseId;
    this.#connection = new BatchConnection(parts.pool, onCallbackError);
    this.#boss = parts.boss;
    this.#history = parts.history;
    this.#queue = queue;
    this.#outstanding = size;
  }

  /** The ambient transaction of one job of the batch; any of `signals` aborts the job (its work is then rolled back). */
  scope(signals: AbortSignal[]): JobScope {
    return new JobScope(this.databaseId, this.#connection, signals, () => this.#report());
  }

  /**
   * `handled`'s job is done: keeps what its scope wrote and resolves once that, its outputs, history
   * entry and completion are committed; rejects when they were not (the job is then still active, no
   * longer claimed, or rolled back with its batch: {@link BatchRolledBackError}).
   */
  async finish(scope: JobScope, handled: HandledJob): Promise<void> {
    let done!: DoneJob;
    const committed = new Promise<void>((resolve, reject) => {
      done = { ...handled, wroteState: scope.started, resolve, reject };
    });
    // Awaited by the caller once `keep` returned; a rejection before that is not unhandled.
    committed.catch(() => {});
    await scope.keep(() => this.#done.push(done));
    return committed;
  }

  #report(): void {
    this.#outstanding--;
    if (this.#outstanding <= 0) {
      clearTimeout(this.#linger);
      this.#linger = undefined;
      void this.#flush();
    } else if (this.#done.length > 0 && !this.#linger) {
      this.#linger = setTimeout(() => {
        this.#linger = undefined;
        void this.#flush();
      }, LINGER_MS);
    }
  }

  /** Writes and commits the jobs done so far, in one transaction with the state their scopes kept. */
  async #flush(): Promise<void> {
    const release = await this.#connection.acquire();
    const jobs = this.#done.splice(0);
    try {
      if (jobs.length === 0) return;
      const written = await this.#write(jobs);
      await this.#connection.end('COMMIT');
      for (const job of written) job.resolve();
    } catch (error) {
      await this.#connection.end('ROLLBACK');
      for (const job of jobs) {
        // One job's state could not be kept: it alone fails, its neighbours are handed back.
        if (error instanceof StateNotKept && job !== error.job) {
          job.reject(new BatchRolledBackError(this.#queue, job.job.id));
        } else job.reject(error instanceof StateNotKept ? error.cause : error);
      }
    } finally {
      release();
    }
  }

  /** Writes what `jobs` leave to the batch (see {@link #writeAll}); returns those written. */
  async #write(jobs: DoneJob[]): Promise<DoneJob[]> {
    if (!this.#connection.keepsWork && jobs.every((job) => job.inserts.size === 0 && !job.history)) {
      // Only completions to write (listeners, handlers without outputs, no history): one statement
      // on pg-boss's own pool needs no transaction, nor a connection of the broker's pool.
      return this.#completeClaimed(jobs);
    }
    try {
      return await this.#connection.guarded(() => this.#writeAll(jobs));
    } catch (error) {
      if (error instanceof StateNotKept) throw error;
      // One statement failed for all: write them one at a time, so only the job at fault fails.
      return this.#writeEach(jobs);
    }
  }

  /**
   * Writes `jobs` in one statement per destination queue, one for their history entries and one
   * completing them; returns the jobs written (those no longer claimed are rejected and left out:
   * their outputs must not be sent).
   */
  async #writeAll(jobs: DoneJob[]): Promise<DoneJob[]> {
    const db = this.#connection;
    const written = await this.#completeClaimed(jobs, db);
    const byQueue = new Map<string, JobInsert[]>();
    for (const { inserts } of written) {
      for (const [queue, list] of inserts) byQueue.set(queue, [...(byQueue.get(queue) ?? []), ...list]);
    }
    for (const [queue, list] of byQueue) await this.#boss.insert(queue, list, db);
    await this.#history.insert(
      db,
      written.flatMap(({ history }) => (history ? [history] : [])),
    );
    return written;
  }

  /**
   * Completes `jobs` in one statement, through `db` when given; returns those completed and rejects
   * the others: no longer claimed (expired or stopped), their writes must not commit. Throws
   * {@link StateNotKept} when one of those wrote state, which cannot be undone alone.
   */
  async #completeClaimed(jobs: DoneJob[], db?: BatchConnection): Promise<DoneJob[]> {
    const settled = await this.#boss.completeAttempts(
      this.#queue,
      jobs.map(({ job }) => job),
      db,
    );
    const lost = jobs.filter((job) => !settled.has(job.job.id));
    for (const job of lost) {
      const error = new Error(
        `job ${job.job.id} is no longer claimed by this worker (expired or stopped); rolled back`,
      );
      if (job.wroteState) throw new StateNotKept(job, error);
      job.reject(error);
    }
    return jobs.filter((job) => !lost.includes(job));
  }

  /**
   * {@link #writeAll} one job at a time, each in a savepoint: a job whose statements fail is
   * rejected alone, unless it wrote state (kept in the transaction): that cannot be undone alone,
   * so everything rolls back ({@link StateNotKept}).
   */
  async #writeEach(jobs: DoneJob[]): Promise<DoneJob[]> {
    const written: DoneJob[] = [];
    for (const job of jobs) {
      try {
        written.push(...(await this.#connection.guarded(() => this.#writeAll([job]))));
      } catch (error) {
        if (error instanceof StateNotKept) throw error;
        if (job.wroteState) throw new StateNotKept(job, error);
        job.reject(error);
      }
    }
    return written;
  }
}

/**
 * A job that wrote state lost its claim, or its outputs could not be written, before the batch's
 * commit: its state cannot be undone alone, so the batch rolls back; `job` fails with `cause` and the
 * others are handed back ({@link BatchRolledBackError}).
 */
class StateNotKept extends Error {
  readonly job: DoneJob;
  override readonly cause: unknown;

  constructor(job: DoneJob, cause: unknown) {
    super(`the state job ${job.job.id} wrote could not be kept`);
    this.job = job;
    this.cause = cause;
  }
}

/** A job of the batch that is done, waiting for its commit. */
interface DoneJob extends HandledJob {
  /** Whether its scope wrote (state kept in the batch's transaction, not undoable alone). */
  wroteState: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * The batch's connection and transaction, opened on the first statement: one user at a time
 * ({@link acquire}), savepoints for those that must be undone alone, and the callbacks that run once
 * the transaction ends.
 */
class BatchConnection {
  readonly #pool: pg.Pool;
  readonly #onCallbackError: (error: unknown) => void;
  #client: Promise<pg.PoolClient> | undefined;
  #tail: Promise<void> = Promise.resolve();
  #savepoints = 0;
  /** Set when the open transaction holds a finished job's writes, which a failure must not roll back. */
  keepsWork = false;
  #callbacks: SettledCallback[] = [];
  #connectionError: Error | undefined;
  readonly #onConnectionError = (error: Error) => {
    this.#connectionError = error;
  };

  constructor(pool: pg.Pool, onCallbackError: (error: unknown) => void) {
    this.#pool = pool;
    this.#onCallbackError = onCallbackError;
  }

  /** Waits until the connection is free; returns the function that frees it again. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const freed = new Promise<void>((resolve) => {
      release = resolve;
    });
    const acquired = this.#tail.then(() => release);
    this.#tail = this.#tail.then(() => freed);
    return acquired;
  }

  async query(statement: Statement, values?: unknown[]): Promise<{ rows: any[]; rowCount?: number | null }> {
    this.#client ??= beginTransaction(this.#pool, this.#onConnectionError);
    const client = await this.#client;
    if (this.#connectionError) throw this.#connectionError;
    return typeof statement === 'string'
      ? client.query(statement, values)
      : client.query({ name: statement.name, text: statement.text, values });
  }

  /** A new savepoint, set now. */
  async savepoint(): Promise<string> {
    const name = `job_${++this.#savepoints}`;
    await this.query(`SAVEPOINT ${name}`);
    return name;
  }

  /**
   * Runs `fn`, undoing what it wrote when it throws: back to a savepoint when the transaction keeps
   * other work, else the whole (otherwise empty) transaction.
   */
  async guarded<T>(fn: () => Promise<T>): Promise<T> {
    const savepoint = this.keepsWork ? await this.savepoint() : null;
    try {
      const result = await fn();
      if (savepoint) await this.query(`RELEASE SAVEPOINT ${savepoint}`);
      // What `fn` wrote must now survive a later failure.
      this.keepsWork = true;
      return result;
    } catch (error) {
      await this.undo(savepoint);
      throw error;
    }
  }

  /** Rolls back to `savepoint`, or the whole transaction when `null`; a failure to do so ends it. */
  async undo(savepoint: string | null): Promise<void> {
    if (savepoint === null) return this.end('ROLLBACK');
    try {
      await this.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    } catch {
      // The transaction is beyond repair (connection lost): what it kept is lost with it, and its
      // commit will fail, rejecting every job whose work it held.
      this.#connectionError ??= new Error('the batch transaction could not roll back to a savepoint');
    }
  }

  onSettled(callback: SettledCallback): void {
    this.#callbacks.push(callback);
  }

  /** Commits (throwing when that fails: it then rolls back) or rolls back, then runs the callbacks; the next statement opens a new transaction. */
  async end(command: 'COMMIT' | 'ROLLBACK'): Promise<void> {
    const pending = this.#client;
    this.#client = undefined;
    this.keepsWork = false;
    const broken = this.#connectionError;
    this.#connectionError = undefined;
    try {
      if (!pending) return;
      let client: pg.PoolClient;
      try {
        client = await pending;
      } catch (error) {
        if (command === 'COMMIT') throw error;
        return;
      }
      try {
        if (broken) throw broken;
        await client.query(command);
        this.#release(client);
      } catch (error) {
        if (command === 'COMMIT') {
          const rolledBack =
            !broken &&
            (await client.query('ROLLBACK').then(
              () => true,
              () => false,
            ));
          this.#release(client, rolledBack ? undefined : error);
        } else this.#release(client, error);
        if (command === 'COMMIT') throw error;
      }
    } finally {
      const callbacks = this.#callbacks;
      this.#callbacks = [];
      await this.runCallbacks(callbacks);
    }
  }

  #release(client: pg.PoolClient, error?: unknown): void {
    client.off('error', this.#onConnectionError);
    releaseClient(client, error);
  }

  /** Runs `callbacks` (of the transaction, or of a job's work rolled back); what one throws is logged. */
  runCallbacks(callbacks: SettledCallback[]): Promise<void> {
    return runSettledCallbacks(callbacks, this.#onCallbackError);
  }
}

/**
 * One job's part of its batch's transaction, its ambient transaction: the first statement waits for
 * the batch's connection and keeps it until the job is done; its writes are kept ({@link keep}) or
 * rolled back alone ({@link rollback}). Aborting one of the job's signals rolls back at once.
 */
export class JobScope implements AmbientTransaction {
  readonly databaseId: string;
  readonly #connection: BatchConnection;
  readonly #report: () => void;
  /** Resolves once the job holds the connection (and its savepoint, if it needs one). */
  #entered: Promise<void> | undefined;
  #release: (() => void) | undefined;
  #savepoint: string | null = null;
  #settled = false;
  #reported = false;
  #abortReason: unknown;
  #callbacks: SettledCallback[] = [];
  /** Listened to until the job is settled (not `AbortSignal.any`: one more signal per job, measurably dearer). */
  #signals: AbortSignal[] = [];
  readonly #onAbort = () => {
    this.#abortReason = this.#signals.find((signal) => signal.aborted)?.reason ?? new Error('job aborted');
    // The job's claim ended (expiry, stop): its writes and the locks they took end now, and the
    // batch's connection is free for the other jobs, not when the handler returns.
    void this.rollback();
  };

  constructor(databaseId: string, connection: BatchConnection, signals: AbortSignal[], report: () => void) {
    this.databaseId = databaseId;
    this.#connection = connection;
    this.#report = report;
    const aborted = signals.find((signal) => signal.aborted);
    if (aborted) this.#abortReason = aborted.reason;
    else {
      this.#signals = signals;
      for (const signal of signals) signal.addEventListener('abort', this.#onAbort);
    }
  }

  /** Whether the job ran a statement: it then holds the batch's connection until it is done. */
  get started(): boolean {
    return this.#entered !== undefined;
  }

  async query(statement: Statement, values?: unknown[]): Promise<{ rows: any[]; rowCount?: number | null }> {
    this.#assertOpen();
    this.#entered ??= this.#enter();
    await this.#entered;
    // Checked again: the job may have been aborted while it waited for the connection.
    this.#assertOpen();
    return this.#connection.query(statement, values);
  }

  async #enter(): Promise<void> {
    this.#release = await this.#connection.acquire();
    // With nothing else in the transaction, a failure rolls all of it back: no savepoint needed.
    if (this.#connection.keepsWork) this.#savepoint = await this.#connection.savepoint();
  }

  #assertOpen(): void {
    if (this.#abortReason) throw this.#abortReason;
    if (this.#settled) throw new Error('The job transaction is already settled');
  }

  onSettled(callback: SettledCallback): void {
    this.#callbacks.push(callback);
  }

  /**
   * The job is done: its writes stay in the batch's transaction, `handOver` runs while it still
   * holds the connection (so no commit can come between), and its callbacks run when the batch's
   * transaction ends. Throws when the job was aborted meanwhile (its writes already rolled back).
   */
  async keep(handOver: () => void): Promise<void> {
    if (this.#abortReason) throw this.#abortReason;
    this.#markSettled();
    try {
      if (this.#entered) {
        await this.#entered;
        // The savepoint stays (no RELEASE, one round trip less): a later job's savepoint nests inside
        // it, and rolling back to that one keeps this job's work.
        this.#connection.keepsWork = true;
      }
      for (const callback of this.#callbacks) this.#connection.onSettled(callback);
      this.#callbacks = [];
      handOver();
    } catch (error) {
      await this.#undo();
      throw error;
    } finally {
      this.#release?.();
      this.#reportOnce();
    }
  }

  /** Rolls back the job's writes if still open and reports it to the batch; never throws. */
  async rollback(): Promise<void> {
    if (!this.#settled) {
      this.#markSettled();
      await this.#undo();
      this.#release?.();
    }
    this.#reportOnce();
  }

  async #undo(): Promise<void> {
    try {
      if (this.#entered) {
        const entered = await this.#entered.then(
          () => true,
          () => false,
        );
        if (entered) await this.#connection.undo(this.#savepoint);
      }
    } finally {
      const callbacks = this.#callbacks;
      this.#callbacks = [];
      await this.#connection.runCallbacks(callbacks);
    }
  }

  #markSettled(): void {
    this.#settled = true;
    // pg-boss's job signal stays alive while it has listeners: one left behind would keep this scope.
    for (const signal of this.#signals) signal.removeEventListener('abort', this.#onAbort);
    this.#signals = [];
  }

  #reportOnce(): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#report();
  }
}
