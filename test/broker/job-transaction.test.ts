import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { JobTransaction } from '../../src/broker/job-transaction';
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
});
