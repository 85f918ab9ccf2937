import type pg from 'pg';
import {
  type AmbientTransaction,
  beginTransaction,
  releaseClient,
  runSettledCallbacks,
} from '../shared/transaction';

/**
 * A transaction on a connection of its own, opened lazily on the first statement, that settles one job
 * apart from its batch (a failure, a reschedule, a hand-back, with its history entry); `signal` aborts
 * it. Handled jobs run in their batch's transaction instead (`JobBatch`, job-batch.ts).
 */
export class JobTransaction implements AmbientTransaction {
  readonly databaseId: string;
  #pool: pg.Pool;
  #client: Promise<pg.PoolClient> | undefined;
  #settled = false;
  #callbacks: Array<() => void | Promise<void>> = [];
  #abortReason: unknown;
  /** Set when the connection broke while checked out (e.g. the server restarted). */
  #connectionError: Error | undefined;
  readonly #onConnectionError = (error: Error) => {
    this.#connectionError = error;
  };

  #signal: AbortSignal | undefined;
  readonly #onAbort = () => {
    this.#abortReason = this.#signal?.reason ?? new Error('job aborted');
    // The job's claim ended (expiry, stop, pg-boss's abort): the transaction and the locks it holds
    // end now, not when the handler returns, so the job's next delivery can take them.
    void this.rollback();
  };

  readonly #onCallbackError: (error: unknown) => void;

  /**
   * `signal` aborts the job (its commit is then refused); `onCallbackError` receives what an
   * `onSettled` callback throws (they run once the transaction committed or rolled back).
   */
  constructor(
    pool: pg.Pool,
    databaseId: string,
    signal?: AbortSignal,
    onCallbackError: (error: unknown) => void = () => {},
  ) {
    this.#pool = pool;
    this.databaseId = databaseId;
    this.#onCallbackError = onCallbackError;
    if (signal?.aborted) this.#abortReason = signal.reason;
    else if (signal) {
      this.#signal = signal;
      signal.addEventListener('abort', this.#onAbort);
    }
  }

  /** Marks the transaction settled and lets go of the job's signal. */
  #markSettled(): void {
    this.#settled = true;
    // pg-boss's job signal (AbortSignal.any) stays alive while it has listeners and is never aborted on
    // a normal completion: a listener left behind would keep this transaction in memory for good.
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#signal = undefined;
  }

  #connect(): Promise<pg.PoolClient> {
    this.#client ??= beginTransaction(this.#pool, this.#onConnectionError);
    return this.#client;
  }

  async query(
    statement: string | { name: string; text: string },
    values?: unknown[],
  ): Promise<{ rows: any[]; rowCount?: number | null }> {
    this.#assertOpen();
    const client = await this.#connect();
    // Checked again: the transaction may have been rolled back (the job aborted) while connecting.
    this.#assertOpen();
    if (this.#connectionError) throw this.#connectionError;
    return typeof statement === 'string'
      ? client.query(statement, values)
      : client.query({ name: statement.name, text: statement.text, values });
  }

  #assertOpen(): void {
    if (this.#abortReason) throw this.#abortReason;
    if (this.#settled) throw new Error('The job transaction is already settled');
  }

  /** Whether a statement ran, i.e. there is a database transaction to commit. */
  get started(): boolean {
    return this.#client !== undefined;
  }

  onSettled(callback: () => void | Promise<void>): void {
    this.#callbacks.push(callback);
  }

  /**
   * Commits, then runs the `onSettled` callbacks; throws when the job was aborted meanwhile (its
   * transaction already rolled back) or the commit failed (it then rolls back).
   */
  async commit(): Promise<void> {
    if (this.#abortReason) throw this.#abortReason;
    // From here the commit decides: an abort arriving meanwhile no longer rolls back.
    this.#markSettled();
    try {
      if (this.#client) {
        const client = await this.#client;
        await client.query('COMMIT');
        this.#release(client);
      }
    } catch (error) {
      await this.#rollbackClient();
      throw error;
    } finally {
      await this.#runSettledCallbacks();
    }
  }

  /** Rolls back if still open, then runs the `onSettled` callbacks; never throws (a broken connection is dropped instead). */
  async rollback(): Promise<void> {
    if (this.#settled) return;
    this.#markSettled();
    try {
      await this.#rollbackClient();
    } finally {
      await this.#runSettledCallbacks();
    }
  }

  async #rollbackClient(): Promise<void> {
    if (!this.#client) return;
    let client: pg.PoolClient;
    try {
      client = await this.#client;
    } catch {
      return;
    }
    try {
      if (this.#connectionError) throw this.#connectionError;
      await client.query('ROLLBACK');
      this.#release(client);
    } catch (error) {
      this.#release(client, error);
    }
  }

  #release(client: pg.PoolClient, error?: unknown): void {
    client.off('error', this.#onConnectionError);
    releaseClient(client, error);
  }

  /** Runs the `onSettled` callbacks once. */
  async #runSettledCallbacks(): Promise<void> {
    const callbacks = this.#callbacks;
    this.#callbacks = [];
    await runSettledCallbacks(callbacks, this.#onCallbackError);
  }
}
