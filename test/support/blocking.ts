import assert from 'node:assert/strict';
import type pg from 'pg';
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
export async function closeWhileBlocked(close: () => Promise<void>, blocker: pg.Client): Promise<void> {
  let closed = false;
  const closing = close().then(() => {
    closed = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(closed, false, 'close() waits for the statement in flight');
  await blocker.query('COMMIT');
  await closing;
}
