import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';

/**
 * The contract between the broker and the machine memory for "one transaction per handled event".
 *
 * While the broker runs a handler for a job, it opens a database transaction that will also insert
 * the handler's output events and complete the job, and exposes it here. A machine memory whose
 * database is the same (equal {@link AmbientTransaction.databaseId}) runs its state `write` through
 * it, so state, outputs and acknowledgement commit together or not at all. Its workflow locks are
 * the transaction's too (advisory locks that end with it, see docs/design.md, "Workflow locks inside
 * a job"), so nobody reads the state before it is committed.
 */
export interface AmbientTransaction {
  /** Identity of the database the transaction runs in (see {@link readDatabaseId}). */
  readonly databaseId: string;
  /**
   * Runs one parameterized statement inside the transaction; a `{ name, text }` statement is prepared
   * once per connection, as on the pool.
   */
  query(
    statement: string | { name: string; text: string },
    values?: unknown[],
  ): Promise<{ rows: any[]; rowCount?: number | null }>;
  /** Registers a callback run once after the transaction committed or rolled back. */
  onSettled(callback: () => void | Promise<void>): void;
}

const storage = new AsyncLocalStorage<AmbientTransaction>();

/** Runs `fn` with `transaction` as the ambient transaction of everything it awaits. */
export function runInAmbientTransaction<T>(
  transaction: AmbientTransaction,
  fn: () => Promise<T>,
): Promise<T> {
  return storage.run(transaction, fn);
}

/** The ambient transaction joined by work in `databaseId`, if any. */
export function ambientTransactionFor(databaseId: string): AmbientTransaction | undefined {
  const current = storage.getStore();
  return current?.databaseId === databaseId ? current : undefined;
}

/**
 * The job the broker is running in this async context (its ambient transaction, whatever database it
 * runs in), or `undefined` outside one. The memory keys the locks it holds by it, so a job's `unlock`
 * releases only the lock that job took, not one another job of the same process took over since.
 */
export function currentJobScope(): object | undefined {
  return storage.getStore();
}

/** Anything that can run a query: a pool, a client or an ambient transaction. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

/**
 * A string that is equal for two connections exactly when they reach the same database of the same
 * cluster: the cluster's system identifier plus the database name. `pg_control_system()` needs
 * `pg_monitor`-like rights on some setups; without them the server address, port and start time
 * stand in, which is equally unique per running cluster.
 */
export async function readDatabaseId(db: Queryable): Promise<string> {
  try {
    const { rows } = await db.query(
      'SELECT (SELECT system_identifier::text FROM pg_control_system()) AS cluster, current_database() AS database',
    );
    return `${rows[0].cluster}/${rows[0].database}`;
  } catch {
    const { rows } = await db.query(
      `SELECT coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port()::text, '') ||
              '@' || pg_postmaster_start_time()::text AS cluster, current_database() AS database`,
    );
    return `${rows[0].cluster}/${rows[0].database}`;
  }
}

/**
 * Returns a checked-out client to its pool; one that broke (`error` given: its transaction could not
 * be ended cleanly) is destroyed instead, so no later user gets a connection in an unknown state.
 */
export function releaseClient(client: pg.PoolClient, error?: unknown): void {
  client.release(error === undefined ? undefined : error instanceof Error ? error : true);
}

/**
 * A client of `pool` in a transaction just begun. `onConnectionError` hears the connection break while
 * the client is checked out (unheard, that 'error' would end the process); take it off before release.
 */
export async function beginTransaction(
  pool: pg.Pool,
  onConnectionError: (error: Error) => void,
): Promise<pg.PoolClient> {
  const client = await pool.connect();
  client.on('error', onConnectionError);
  try {
    await client.query('BEGIN');
  } catch (error) {
    client.off('error', onConnectionError);
    releaseClient(client, error);
    throw error;
  }
  return client;
}

/** Runs `callbacks` (a transaction's `onSettled` ones) in order; what one throws goes to `onError`. */
export async function runSettledCallbacks(
  callbacks: Array<() => void | Promise<void>>,
  onError: (error: unknown) => void,
): Promise<void> {
  for (const callback of callbacks) {
    try {
      await callback();
    } catch (error) {
      onError(error);
    }
  }
}

/**
 * Runs `fn` in one transaction on a connection of `pool`: commits what it did, or rolls back and
 * rethrows. A connection whose rollback failed too is dropped, not returned to the pool.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  // A connection lost mid-way then fails the next statement instead of ending the process.
  const onConnectionError = () => {};
  const client = await beginTransaction(pool, onConnectionError);
  try {
    const result = await fn(client);
    await client.query('COMMIT');
    client.off('error', onConnectionError);
    client.release();
    return result;
  } catch (error) {
    const rolledBack = await client.query('ROLLBACK').then(
      () => true,
      () => false,
    );
    client.off('error', onConnectionError);
    releaseClient(client, rolledBack ? undefined : error);
    throw error;
  }
}
