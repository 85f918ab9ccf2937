/**
 * The switch from `@arvo-tools/postgres`, which pins pg-boss 12.5.x, on the same `pgboss` schema: a
 * 12.5 schema holding jobs (sent as that package sends them: `event.toJSON()` as job data) is migrated
 * by pg-boss 12.38's own migrations when this broker starts, and every job waiting there is delivered.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import type pg from 'pg';
import { PgBoss as PgBoss125 } from 'pg-boss-12-5';
import { PostgresEventBroker } from '../../src/broker/index';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { clientEvent, handler, jobsIn, memoryLogger, newPool, replyTo, waitFor } from './support';

let db: TestDatabase;
let pool: pg.Pool;

before(async () => {
  db = await createTestDatabase('broker_pgboss_upgrade');
  pool = newPool(db.url);
});
after(() => closeAll(pool, db));

describe('pg-boss 12.5 schema → this broker (pg-boss 12.38)', () => {
  it('migrates a 12.5 schema holding waiting, deferred and completed jobs and delivers the waiting ones', async () => {
    // The old installation: pg-boss 12.5 creates its schema and queues; events are queued.
    const old = new PgBoss125({ connectionString: db.url });
    old.on('error', () => {});
    await old.start();
    const oldVersion = await old.schemaVersion();
    assert.equal(oldVersion, 26);
    await old.createQueue('com.legacy.echo');
    await old.createQueue('com.test.client');
    const waiting = Array.from({ length: 4 }, (_, i) => clientEvent('com.legacy.echo', { i }));
    for (const event of waiting) assert.ok(await old.send('com.legacy.echo', event.toJSON()));
    const deferred = clientEvent('com.legacy.echo', { deferred: true });
    await old.send('com.legacy.echo', deferred.toJSON(), { startAfter: 2 });
    const handledBefore = clientEvent('com.legacy.echo', { before: true });
    const handledJob = await old.send('com.legacy.echo', handledBefore.toJSON(), { priority: 10 });
    const [fetched] = await old.fetch('com.legacy.echo');
    assert.equal(fetched?.id, handledJob);
    await old.complete('com.legacy.echo', handledJob!);
    // Switch-over: the old workers stop before the new broker starts.
    await old.stop({ graceful: true, timeout: 5000 });

    const replies = new Map<string, ArvoEvent>();
    const broker = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    try {
      await broker.register(
        handler('com.legacy.echo', async (event) => [replyTo(event, 'evt.legacy.echo', event.data)]),
      );
      await broker.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void replies.set(event.subject, event),
      });
      await broker.start();
      const { rows } = await pool.query('SELECT version FROM pgboss.version');
      assert.equal(rows[0].version, 46, "pg-boss 12.38's schema version");

      for (const event of [...waiting, deferred]) {
        const reply = await waitFor(
          `reply to ${JSON.stringify(event.data)}`,
          () => replies.get(event.subject),
          20_000,
        );
        assert.deepEqual(reply.data, event.data);
      }
      assert.equal(
        replies.has(handledBefore.subject),
        false,
        'a job completed before the switch is not run again',
      );
      const states = (await jobsIn(pool, 'com.legacy.echo')).map((job) => job.state);
      assert.deepEqual(
        states.sort(),
        Array.from({ length: 6 }, () => 'completed'),
      );
    } finally {
      await broker.stop({ timeoutMs: 5000 });
    }
  });
});
