import type pg from 'pg';
import type { Db } from 'pg-boss';
import type { AmbientTransaction } from '../shared/transaction';

/**
 * The one transaction a handled job runs in: the memory's state write (through the ambient
 * transaction), the insert of the handler's outputs and the job's completion all go through it and
 * commit together. The connection is taken lazily, on the first statement, so a handler that never
 * touches the database (most services) holds no connection while it runs.
 */
export class JobTransaction implements AmbientTransaction {
  readonly databaseId: string;
  /** The same transaction as a pg-boss `db`, for `insert`/`complete` with `{ db }`. */
  readonly db: Db;
  #pool: pg.Pool;
  #client: Promise<pg.PoolClient> | undefined;
  #settled = false;
  #callbacks: Array<() => void | Promise<void>> = [];
  #abortReason: unknown;

  constructor(pool: pg.Pool, databaseId: string, signal?: AbortSignal) {
    this.#pool = pool;
    this.databaseId = databaseId;
    this.db = { executeSql: (text, values) => this.query(text, values) };
    signal?.addEventListener('abort', () => {
      this.#abortReason = signal.reason ?? new Error('job aborted');
    });
  }

  #connect(): Promise<pg.PoolClient> {
    this.#client ??= (async () => {
      const client = await this.#pool.connect();
      try {
        await client.query('BEGIN');
      } catch (error) {
        client.release(true);
        throw error;
      }
      return client;
    })();
    return this.#client;
  }

  async query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount?: number | null }> {
    if (this.#settled) throw new Error('The job transaction is already settled');
    if (this.#abortReason) throw this.#abortReason;
    const client = await this.#connect();
    return client.query(text, values);
  }

  onSettled(callback: () => void | Promise<void>): void {
    this.#callbacks.push(callback);
  }

  /** Commits; throws (and the caller rolls back) when the job was aborted meanwhile. */
  async commit(): Promise<void> {
    if (this.#abortReason) throw this.#abortReason;
    if (!this.#client) {
      this.#settled = true;
      return;
    }
    const client = await this.#client;
    await client.query('COMMIT');
    this.#settled = true;
    client.release();
  }

  /** Rolls back if still open; never throws (a broken connection is dropped instead). */
  async rollback(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    if (!this.#client) return;
    let client: pg.PoolClient;
    try {
      client = await this.#client;
    } catch {
      return;
    }
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (error) {
      client.release(error instanceof Error ? error : true);
    }
  }

  /** Runs the `onSettled` callbacks once; their errors are passed to `onError`. */
  async runSettledCallbacks(onError: (error: unknown) => void): Promise<void> {
    const callbacks = this.#callbacks;
    this.#callbacks = [];
    for (const callback of callbacks) {
      try {
        await callback();
      } catch (error) {
        onError(error);
      }
    }
  }
}
