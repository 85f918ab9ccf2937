import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { createArvoEvent } from 'arvo-core';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { JobTransaction } from '../../src/broker/job-transaction';
import { silentLogger } from '../../src/shared/logger';
import { createTestDatabase, type TestDatabase } from '../support/database';

describe('JobTransaction', () => {
  let db: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    db = await createTestDatabase('job_transaction');
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    await pool.query('CREATE TABLE marks (id int PRIMARY KEY)');
  });

  after(async () => {
    await pool.end();
    await db.drop();
  });

  it('prepares a named statement on its connection, as the pool does', async () => {
    const transaction = new JobTransaction(pool, 'db');
    const statement = { name: 'job_tx_named_mark', text: 'INSERT INTO marks VALUES ($1) RETURNING id' };
    assert.deepEqual((await transaction.query(statement, [10])).rows, [{ id: 10 }]);
    const { rows } = await transaction.query('SELECT name FROM pg_prepared_statements WHERE name = $1', [
      statement.name,
    ]);
    assert.deepEqual(rows, [{ name: statement.name }]);
    await transaction.rollback();
  });

  // pg-boss's job signals are never aborted on a normal completion, so a listener left on them keeps
  // every transaction (and its span and closures) in memory: ~3 KB per handled event.
  it('lets go of the job signal once committed or rolled back', async () => {
    const committed = new AbortController();
    const withWork = new JobTransaction(pool, 'db', committed.signal);
    await withWork.query('INSERT INTO marks VALUES (1)');
    assert.equal(getEventListeners(committed.signal, 'abort').length, 1);
    await withWork.commit();
    assert.equal(getEventListeners(committed.signal, 'abort').length, 0);

    const idle = new AbortController();
    await new JobTransaction(pool, 'db', idle.signal).commit();
    assert.equal(getEventListeners(idle.signal, 'abort').length, 0);

    const rolledBack = new AbortController();
    const failing = new JobTransaction(pool, 'db', rolledBack.signal);
    await failing.query('INSERT INTO marks VALUES (2)');
    await failing.rollback();
    assert.equal(getEventListeners(rolledBack.signal, 'abort').length, 0);

    const { rows } = await pool.query('SELECT id FROM marks ORDER BY id');
    assert.deepEqual(
      rows.map((row) => row.id),
      [1],
    );
  });

  it('runs the onSettled callbacks once, after the commit or the rollback, passing their errors on', async () => {
    for (const outcome of ['commit', 'rollback'] as const) {
      const seen: string[] = [];
      const errors: unknown[] = [];
      const transaction = new JobTransaction(pool, 'db', undefined, (error) => errors.push(error));
      await transaction.query(`INSERT INTO marks VALUES (${outcome === 'commit' ? 10 : 11})`);
      transaction.onSettled(async () => {
        // The deferred unlock must see the transaction's outcome already in place.
        const { rowCount } = await pool.query('SELECT 1 FROM marks WHERE id IN (10, 11)');
        seen.push(`${outcome}:${rowCount}`);
      });
      transaction.onSettled(() => {
        throw new Error('callback failed');
      });
      if (outcome === 'commit') await transaction.commit();
      else await transaction.rollback();
      await transaction.rollback();
      assert.deepEqual(seen, [`${outcome}:${outcome === 'commit' ? 1 : 0}`]);
      assert.equal(errors.length, 1);
      assert.match(String(errors[0]), /callback failed/);
      await pool.query('DELETE FROM marks WHERE id IN (10, 11)');
    }
  });

  it('refuses to commit a job aborted while it ran, so its writes roll back', async () => {
    const controller = new AbortController();
    const transaction = new JobTransaction(pool, 'db', controller.signal);
    await transaction.query('INSERT INTO marks VALUES (3)');
    controller.abort(new Error('claim expired'));
    await assert.rejects(transaction.commit(), /claim expired/);
    await transaction.rollback();
    const { rowCount } = await pool.query('SELECT 1 FROM marks WHERE id = 3');
    assert.equal(rowCount, 0);
  });

  // A workflow's job lock is a transaction-scoped advisory lock: were the transaction kept open until
  // the overrunning handler returns, the job's next delivery could never take the workflow over.
  it('ends an aborted job transaction at once, with its locks, not when the handler returns', async () => {
    const controller = new AbortController();
    const transaction = new JobTransaction(pool, 'db', controller.signal);
    await transaction.query('INSERT INTO marks VALUES (4)');
    await transaction.query('SELECT pg_advisory_xact_lock(4242)');
    const other = await pool.connect();
    try {
      const tryLock = async () =>
        (await other.query('SELECT pg_try_advisory_lock(4242) AS locked')).rows[0].locked as boolean;
      assert.equal(await tryLock(), false, 'held while the job runs');
      controller.abort(new Error('claim expired'));
      // The handler has not returned (nobody called commit or rollback): the lock is free anyway.
      const deadline = Date.now() + 10_000;
      let locked = false;
      while (!locked && Date.now() < deadline) {
        locked = await tryLock();
        if (!locked) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(locked, true, 'the aborted job released its lock');
      await other.query('SELECT pg_advisory_unlock(4242)');
      await assert.rejects(transaction.query('INSERT INTO marks VALUES (5)'), /claim expired/);
      await assert.rejects(transaction.commit(), /claim expired/);
      const { rowCount } = await pool.query('SELECT 1 FROM marks WHERE id IN (4, 5)');
      assert.equal(rowCount, 0);
    } finally {
      other.release();
    }
  });

  // Listeners and handlers without outputs write nothing: settling them must not need a transaction
  // (BEGIN, complete, COMMIT on a checked-out connection) when one fenced statement does.
  it('settles a job that wrote nothing without taking a connection from the broker pool', async () => {
    const brokerPool = new pg.Pool({ connectionString: db.url, max: 1, connectionTimeoutMillis: 20_000 });
    // Without the event history: its insert takes a broker-pool connection (docs/design.md, "Event history").
    const broker = new PostgresEventBroker({ pool: brokerPool, logger: silentLogger, history: false });
    const handled: string[] = [];
    await broker.onWorkflowComplete({
      source: 'com.test.quiet',
      listener: (event) => {
        handled.push(event.id);
      },
    });
    await broker.start();
    const held = await brokerPool.connect();
    try {
      const event = createArvoEvent(
        { source: 'com.test.client', type: 'com.test.quiet', subject: 's', to: 'com.test.quiet', data: {} },
        {},
        { disable: true },
      );
      await broker.dispatch(event);
      const deadline = Date.now() + 10_000;
      let state: string | undefined;
      while (Date.now() < deadline) {
        const { rows } = await pool.query('SELECT state FROM pgboss.job WHERE id = $1', [event.id]);
        state = rows[0]?.state;
        if (state === 'completed') break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(state, 'completed', 'completed while the broker pool had no free connection');
      assert.deepEqual(handled, [event.id]);
    } finally {
      held.release();
      await broker.stop({ timeoutMs: 2000 });
      await brokerPool.end();
    }
  });
});
