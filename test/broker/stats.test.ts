/**
 * `getStats()` counts exactly whichever way PostgreSQL runs the count: the retained finished rows of
 * a named queue are counted by an uncorrelated subquery that may run in parallel workers, those of
 * the other queues (`queues: 'all'`) by a correlated one. With parallel plans made free on this
 * database, a few tens of thousands of rows are enough for the parallel plan.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import format from 'pg-format';
import { type BrokerQueueStats, queryQueueStats } from '../../src/broker/index';
import { deadLetterQueuesOption } from '../../src/broker/options';
import { queueStatsSql } from '../../src/broker/sql';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';
import { abandonedQueue, newPool, openTestDatabase } from './support';

const BUSY = 'com.test.stats.busy';
const DONE = 'com.test.stats.done';

/** Inserts `count` rows of `state` into `queue`, unserved: nothing fetches or settles them. */
async function insertJobs(
  pool: pg.Pool,
  queue: string,
  count: number,
  state: 'created' | 'retry' | 'active' | 'completed' | 'cancelled' | 'failed',
  options: { startInSeconds?: number } = {},
): Promise<void> {
  const finished = state === 'completed' || state === 'cancelled' || state === 'failed';
  await pool.query(
    `INSERT INTO pgboss.job (id, name, data, state, start_after, started_on, completed_on)
     SELECT gen_random_uuid(), $1, '{}'::jsonb, $2::pgboss.job_state, now() + $3 * interval '1 second',
            CASE WHEN $2 IN ('created', 'retry') THEN NULL ELSE now() END,
            CASE WHEN $4 THEN now() END
       FROM generate_series(1, $5::int)`,
    [queue, state, options.startInSeconds ?? 0, finished, count],
  );
}

/** The counts a test asserts (`oldestQueuedAgeMs` moves with the clock, `paused` is not counted). */
function counts(stats: BrokerQueueStats) {
  const { oldestQueuedAgeMs: _age, paused: _paused, ...rest } = stats;
  return rest;
}

describe('getStats counts retained jobs exactly, serially and in parallel', () => {
  let db: TestDatabase;
  let admin: pg.Pool;
  let pool: pg.Pool;

  before(async () => {
    ({ db, pool: admin } = await openTestDatabase('broker_stats'));
    await abandonedQueue(db.url, BUSY, {});
    await abandonedQueue(db.url, DONE, {});
    await insertJobs(admin, BUSY, 30_000, 'completed');
    await insertJobs(admin, BUSY, 3, 'cancelled');
    await insertJobs(admin, BUSY, 4, 'failed');
    await insertJobs(admin, BUSY, 2, 'active');
    await insertJobs(admin, BUSY, 5, 'created');
    await insertJobs(admin, BUSY, 6, 'created', { startInSeconds: 3600 });
    await insertJobs(admin, BUSY, 1, 'retry');
    await insertJobs(admin, DONE, 20_000, 'completed');
    await admin.query('VACUUM (ANALYZE) pgboss.job');
    // Parallel plans at no cost: the named counts below run in parallel workers however small the table.
    await admin.query(
      format(
        'ALTER DATABASE %I SET parallel_setup_cost = 0; ALTER DATABASE %I SET parallel_tuple_cost = 0; ' +
          'ALTER DATABASE %I SET min_parallel_index_scan_size = 0',
        db.name,
        db.name,
        db.name,
      ),
    );
    pool = newPool(db.url); // sessions opened after ALTER DATABASE
  });
  after(() => closeAll(pool, admin, db));

  it('named and every-queue stats give the same exact counts, the named ones from parallel workers', async () => {
    const { rows: plan } = await pool.query(`EXPLAIN ${queueStatsSql('pgboss', 2)}`, [
      [BUSY, DONE],
      false,
      deadLetterQueuesOption(undefined),
      900,
    ]);
    assert.match(
      plan.map((row) => row['QUERY PLAN']).join('\n'),
      /Gather[\s\S]*Parallel (Index Only|Seq) Scan/,
    );

    const named = await queryQueueStats(pool, 'pgboss', [BUSY, DONE], false);
    assert.deepEqual(named.map(counts), [
      {
        name: BUSY,
        queued: 12,
        active: 2,
        deferred: 6,
        failed: 4,
        completed: 30_003,
        total: 30_021,
        deadLettered: 0,
        deadLetteredRecently: 0,
      },
      {
        name: DONE,
        queued: 0,
        active: 0,
        deferred: 0,
        failed: 0,
        completed: 20_000,
        total: 20_000,
        deadLettered: 0,
        deadLetteredRecently: 0,
      },
    ]);
    // Every queue: BUSY and DONE counted by the correlated count, the same numbers.
    const all = await queryQueueStats(pool, 'pgboss', [], true);
    assert.deepEqual(
      all.filter((stats) => stats.name === BUSY || stats.name === DONE).map(counts),
      named.map(counts),
    );
    // Named first, in the given order, then the rest by name.
    const mixed = await queryQueueStats(pool, 'pgboss', [DONE], true);
    assert.equal(mixed[0]!.name, DONE);
    assert.deepEqual(
      counts(mixed.find((stats) => stats.name === BUSY)!),
      counts(all.find((stats) => stats.name === BUSY)!),
    );
  });

  it('moves by exactly the rows that finish or are deleted, as no estimate would', async () => {
    const before = await queryQueueStats(pool, 'pgboss', [BUSY, DONE], false);
    await admin.query(
      `UPDATE pgboss.job SET state = 'completed', completed_on = now()
        WHERE id IN (SELECT id FROM pgboss.job WHERE name = $1 AND state = 'created' LIMIT 1)`,
      [BUSY],
    );
    await admin.query(
      `DELETE FROM pgboss.job WHERE id IN (SELECT id FROM pgboss.job WHERE name = $1 LIMIT 7)`,
      [DONE],
    );
    const now = await queryQueueStats(pool, 'pgboss', [BUSY, DONE], false);
    assert.deepEqual(
      now.map((stats, index) => ({
        queued: stats.queued - before[index]!.queued,
        completed: stats.completed - before[index]!.completed,
        total: stats.total - before[index]!.total,
      })),
      [
        { queued: -1, completed: 1, total: 0 },
        { queued: 0, completed: -7, total: -7 },
      ],
    );
    const all = await queryQueueStats(pool, 'pgboss', [], true);
    assert.deepEqual(
      all.filter((stats) => stats.name === BUSY || stats.name === DONE).map(counts),
      now.map(counts),
    );
  });
});
