import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { PostgresEventBroker, QueueDeletionRefusedError } from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { runCliInProcess } from '../support/cli';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';
import { clientEvent, handler, jobsIn, memoryLogger, openTestDatabase, waitFor } from './support';

describe('PostgresEventBroker: queue control (pause, resume, delete, default priority)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  /** Serves the queues. */
  let worker: PostgresEventBroker;
  /** Another broker (another pg-boss, another pool): pauses, dispatches, deletes. */
  let operator: PostgresEventBroker;
  const handled: string[] = [];

  before(async () => {
    ({ db, pool } = await openTestDatabase('broker_queue_control'));
    worker = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    await worker.register(
      handler('com.qc.work', async (event) => {
        handled.push(event.id);
        return [];
      }),
    );
    await worker.register(
      handler('com.qc.urgent', async () => []),
      { priority: 5 },
    );
    await worker.start();
    operator = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    await operator.start();
  });

  after(() => closeAll(worker, operator, pool, db));

  it('pauses a queue in every process within a second; dispatch still accepts; resume delivers what waited', async () => {
    await operator.pauseQueue('com.qc.work');
    // Within a second every broker stops fetching: leave it a generous margin on a loaded machine.
    await sleep(2500);
    const events = [1, 2, 3].map((n) => clientEvent('com.qc.work', { n }));
    for (const event of events) await operator.dispatch(event);
    await sleep(3000);
    assert.deepEqual(handled, [], 'nothing fetched while paused');
    const [stats] = await worker.getStats({ queues: ['com.qc.work'] });
    assert.deepEqual([stats?.paused, stats?.queued], [true, 3]);
    assert.match(await worker.getMetrics(), /arvo_postgres_queue_paused\{queue="com\.qc\.work"\} 1/);
    const cli = await runCliInProcess(['stats', '--url', db.url, '--queue', 'com.qc.work']);
    assert.match(cli.output, /PAUSED[\s\S]*com\.qc\.work.*yes/);

    // A broker starting while the queue is paused does not fetch it either.
    const late = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    const lateHandled: string[] = [];
    await late.register(
      handler('com.qc.work', async (event) => {
        lateHandled.push(event.id);
        return [];
      }),
    );
    await late.start();
    try {
      await sleep(2000);
      assert.deepEqual(lateHandled, []);
    } finally {
      await late.stop({ timeoutMs: 1000 });
    }

    const resumed = await runCliInProcess(['queues', 'resume', 'com.qc.work', '--url', db.url]);
    assert.equal(resumed.code, 0, resumed.output);
    await waitFor('the waiting events are handled once resumed', () => handled.length === 3, 20_000);
    assert.deepEqual([...handled].sort(), events.map((event) => event.id).sort());
    const [after] = await worker.getStats({ queues: ['com.qc.work'] });
    assert.equal(after?.paused, false);

    // The CLI pauses as the API does.
    const paused = await runCliInProcess(['queues', 'pause', 'com.qc.work', '--url', db.url]);
    assert.equal(paused.code, 0, paused.output);
    await sleep(2500);
    await operator.dispatch(clientEvent('com.qc.work'));
    await sleep(2500);
    assert.equal(handled.length, 3, 'paused again through the CLI');
    await operator.resumeQueue('com.qc.work');
    await waitFor('handled after resume', () => handled.length === 4, 20_000);
  });

  it("stores a registration's default priority with the queue: another process's events get it", async () => {
    await worker.pauseQueue('com.qc.urgent'); // keep the jobs to look at them
    const plain = clientEvent('com.qc.urgent');
    const explicit = clientEvent('com.qc.urgent');
    await operator.dispatch(plain);
    await operator.dispatch(explicit, { priority: 1 });
    const jobs = await pool.query(
      `SELECT data->>'id' AS id, priority FROM pgboss.job WHERE name = 'com.qc.urgent'`,
    );
    const priorityOf = (id: string) => jobs.rows.find((row) => row.id === id)?.priority;
    assert.equal(priorityOf(plain.id), 5, "the queue's default, set by the registering process");
    assert.equal(priorityOf(explicit.id), 1, "dispatch's own priority wins");
    await worker.resumeQueue('com.qc.urgent');
  });

  it('deletes a queue only when it is empty (or forced), never an internal queue', async () => {
    for (const internal of ['arvo.dead-letter', 'arvo.unroutable', 'arvo.domained']) {
      await assert.rejects(operator.deleteQueue(internal, { force: true }), QueueDeletionRefusedError);
    }
    await assert.rejects(operator.deleteQueue('com.qc.nothing'), InvalidOptionError);
    // A queue nobody serves, with a waiting job.
    const gone = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    await gone.register(handler('com.qc.old', async () => []));
    await gone.start();
    await gone.stop({ timeoutMs: 1000 });
    await operator.dispatch(clientEvent('com.qc.old'));
    await assert.rejects(operator.deleteQueue('com.qc.old'), (error: unknown) => {
      assert.ok(error instanceof QueueDeletionRefusedError);
      assert.match(error.message, /1 job\(s\) are waiting/);
      return true;
    });
    const refused = await runCliInProcess(['queues', 'delete', 'com.qc.old', '--url', db.url]);
    assert.equal(refused.code, 1, refused.output);
    assert.equal((await jobsIn(pool, 'com.qc.old')).length, 1, 'nothing deleted when refused');
    const forced = await runCliInProcess(['queues', 'delete', 'com.qc.old', '--force', '--url', db.url]);
    assert.equal(forced.code, 0, forced.output);
    assert.equal((await jobsIn(pool, 'com.qc.old')).length, 0);
    const { rows } = await pool.query(`SELECT 1 FROM pgboss.queue WHERE name = 'com.qc.old'`);
    assert.equal(rows.length, 0, 'the queue is gone');
    const dlq = await runCliInProcess(['queues', 'delete', 'arvo.dead-letter', '--force', '--url', db.url]);
    assert.equal(dlq.code, 1, dlq.output);
  });
});
