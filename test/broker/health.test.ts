/**
 * `broker.health()` against a real PostgreSQL: what a readiness probe sees before start, while serving,
 * when the database stops answering on the broker's pool, and after stop.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { handler, memoryLogger, waitFor } from './support';

describe('PostgresEventBroker.health', () => {
  let db: TestDatabase;

  before(async () => {
    db = await createTestDatabase('broker_health');
  });

  after(async () => {
    await db?.drop();
  });

  it('reports not ok before start, ok with active workers and a recent fetch while serving, not ok once stopped', async () => {
    const broker = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    await broker.register(handler('com.health.a', async () => []));
    const unstarted = await broker.health();
    assert.equal(unstarted.ok, false);
    assert.equal(unstarted.state, 'new');
    assert.equal(unstarted.database.reachable, false);
    await broker.start();
    try {
      const serving = await waitFor('a first fetch', async () => {
        const health = await broker.health();
        return health.sinceLastFetchMs === null ? undefined : health;
      });
      assert.equal(serving.ok, true);
      assert.equal(serving.state, 'started');
      assert.equal(serving.database.reachable, true);
      assert.equal(typeof serving.database.latencyMs, 'number');
      assert.equal(serving.circuit, 'closed');
      assert.ok(
        serving.workers.some((worker) => worker.queue === 'com.health.a' && worker.state === 'active'),
      );
      // The worker polls every second: its last fetch stays recent.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const later = await broker.health();
      assert.ok(
        later.sinceLastFetchMs !== null && later.sinceLastFetchMs < 2500,
        String(later.sinceLastFetchMs),
      );
      await assert.rejects(broker.health({ timeout: 5 } as never), InvalidOptionError);
    } finally {
      await broker.stop({ timeoutMs: 2000 });
    }
    const stopped = await broker.health();
    assert.equal(stopped.ok, false);
    assert.equal(stopped.state, 'stopped');
  });

  it('reports the database unreachable when the broker pool cannot answer', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    const broker = new PostgresEventBroker({ pool, logger: memoryLogger() });
    await broker.start();
    try {
      assert.equal((await broker.health()).database.reachable, true);
      await pool.end();
      const health = await broker.health({ timeoutMs: 2000 });
      assert.equal(health.ok, false);
      assert.equal(health.database.reachable, false);
      assert.match(String(health.database.error), /pool/i);
    } finally {
      await broker.stop({ timeoutMs: 1000 });
    }
  });
});
