import assert from 'node:assert/strict';
import pg from 'pg';
import format from 'pg-format';
import { testPool } from './database';
import { waitFor } from './wait';

/** Resolves once a statement whose text contains `fragment` waits for a lock in `pool`'s database. */
export async function waitUntilBlocked(pool: pg.Pool, fragment: string, what: string): Promise<void> {
  await waitFor(what, async () => {
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE wait_event_type = 'Lock' AND position($1 IN query) > 0 AND datname = current_database()
         AND pid <> pg_backend_pid()`,
      [fragment],
    );
    return rows[0].n === 1;
  });
}

/**
 * Calls `close` while the open transaction of `blocker` holds a lock that a statement of the closed
 * object waits for: `close()` must still be pending 200 ms later; then `blocker` commits and
 * `close()` is awaited.
 */
async function closeWhileBlocked(close: () => Promise<void>, blocker: pg.Client): Promise<void> {
  let closed = false;
  const closing = close().then(() => {
    closed = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(closed, false, 'close() waits for the statement in flight');
  await blocker.query('COMMIT');
  await closing;
}

/**
 * Holds `public.<table>` ACCESS EXCLUSIVE in an open transaction, starts what `open` returns on a
 * pool of its own (its periodic sweep then waits for the table at `sweepFragment`) and closes it
 * while that sweep is blocked (see {@link closeWhileBlocked}): the batch in flight must finish and no
 * other follow, so `table` holds `remaining` rows right after close() and still 200 ms later.
 */
export async function closeDuringSweep(
  url: string,
  sweep: {
    table: string;
    sweepFragment: string;
    open: (pool: pg.Pool) => Promise<{ close(): Promise<void> }>;
    remaining: number;
    batch: string;
  },
): Promise<void> {
  const pool = testPool(url, 3);
  const blocker = new pg.Client({ connectionString: url });
  await blocker.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query(format('LOCK TABLE public.%I IN ACCESS EXCLUSIVE MODE', sweep.table));
    const swept = await sweep.open(pool);
    await waitUntilBlocked(pool, sweep.sweepFragment, 'the sweep waits for the table');
    await closeWhileBlocked(() => swept.close(), blocker);
    const count = async () =>
      (await pool.query(format('SELECT count(*)::int AS n FROM public.%I', sweep.table))).rows[0].n;
    assert.equal(
      await count(),
      sweep.remaining,
      `the batch in flight (${sweep.batch}) finished, no further batch ran`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await count(), sweep.remaining, 'no sweep after close');
  } finally {
    await blocker.end();
    await pool.end();
  }
}
