/**
 * The seam to pg-boss: after a worker's batch pg-boss completes every job the handler reported
 * `completed`, in one more statement. The broker has settled each of them itself by then (in the
 * job's transaction, or its failure settle), so that statement would change no row: it is not sent.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { clientEvent, handler, jobsIn, memoryLogger, useTestDatabase, waitFor } from './support';

/** pg-boss's per-job completion (`completeJobsWithOutputs`) as PostgreSQL receives it. */
const PER_JOB_COMPLETION = /json_to_recordset[\s\S]*state = 'completed'/;

describe('PgBossClient: no second settle of a job the broker settled', () => {
  const suite = useTestDatabase('broker_pgboss_seam');
  const sent: string[] = [];
  const query = pg.Client.prototype.query;

  before(() => {
    // Every client of the process, pg-boss's own pool included.
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const [config] = args;
      sent.push(typeof config === 'string' ? config : String((config as { text?: unknown })?.text));
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
  });

  after(() => {
    pg.Client.prototype.query = query;
  });

  it('sends no completion after the batch for handled, failed or dead-lettered jobs', async () => {
    const broker = new PostgresEventBroker({
      connectionString: suite.db.url,
      logger: memoryLogger(),
      defaults: { worker: { retryLimit: 1, retryDelay: 0, retryBackoff: false } },
    });
    const handled: string[] = [];
    await broker.register(
      handler('com.seam.sink', async (event) => {
        handled.push(event.id);
        return [];
      }),
    );
    await broker.register(
      handler('com.seam.relay', async (event) => [
        clientEvent('com.seam.sink', {}, { source: 'com.seam.relay', subject: event.subject }),
      ]),
    );
    await broker.register(
      handler('com.seam.broken', async () => {
        throw new Error('always fails');
      }),
    );
    await broker.start();
    try {
      sent.length = 0;
      const relayed = Array.from({ length: 5 }, () => clientEvent('com.seam.relay'));
      const broken = clientEvent('com.seam.broken');
      await broker.dispatchMany([...relayed, broken]);
      await waitFor('every relayed event reached the sink', () => handled.length >= relayed.length);
      await waitFor('the broken event is dead-lettered', async () =>
        (await jobsIn(suite.pool, 'com.seam.broken')).every((job) => job.state === 'failed')
          ? true
          : undefined,
      );
      await waitFor('the sink jobs are completed', async () =>
        (await jobsIn(suite.pool, 'com.seam.sink')).filter((job) => job.state === 'completed').length ===
        relayed.length
          ? true
          : undefined,
      );
      assert.equal(new Set(handled).size, relayed.length, 'each event handled once');
      for (const queue of ['com.seam.relay', 'com.seam.sink']) {
        const jobs = await jobsIn(suite.pool, queue);
        assert.ok(
          jobs.every((job) => job.state === 'completed' && job.retry_count === 0),
          `${queue}: completed at the first attempt`,
        );
      }
      assert.deepEqual(
        sent.filter((text) => PER_JOB_COMPLETION.test(text)),
        [],
        "pg-boss's per-job completion was sent for jobs the broker had settled",
      );
    } finally {
      await broker.stop({ timeoutMs: 2000 });
    }
  });
});
