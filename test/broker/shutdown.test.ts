/**
 * Graceful shutdown of a real worker process: SIGTERM mid-handler hands the job back to its queue at
 * once (no retry spent, nothing left `active` until expiry), and another process finishes it.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';
import {
  clientEvent,
  handler,
  jobsIn,
  memoryLogger,
  openTestDatabase,
  replyTo,
  spawnWorker,
  waitFor,
} from './support';

const QUEUE = 'com.shutdown.slow';

describe('PostgresEventBroker.stopOnSignals', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let child: ChildProcess | undefined;
  const brokers: PostgresEventBroker[] = [];

  before(async () => {
    ({ db, pool } = await openTestDatabase('broker_shutdown'));
  });

  after(async () => {
    child?.kill('SIGKILL');
    await Promise.all(brokers.map((broker) => broker.stop({ timeoutMs: 1000 })));
    await closeAll(pool, db);
  });

  it('SIGTERM mid-handler: the process exits, nothing stays active, another process finishes the job within seconds', async () => {
    const worker = spawnWorker('shutdown-worker.ts', db.url);
    child = worker.child;
    const output = worker.output;
    await waitFor('worker ready', () => output().includes('ready'), 30_000);
    const producer = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    brokers.push(producer);
    await producer.start();
    const event = clientEvent(QUEUE);
    await producer.dispatch(event);
    await waitFor('handler started', () => output().includes('started'), 30_000);

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const signalled = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    child = undefined;
    // timeoutMs 2000 + pg-boss's grace + drain: far below expireInSeconds (300 s).
    assert.ok(Date.now() - signalled < 15_000, `exited after ${Date.now() - signalled} ms`);

    const jobs = await jobsIn(pool, QUEUE);
    assert.deepEqual(
      jobs.filter((job) => job.state === 'active'),
      [],
    );
    const [original, copy] = jobs;
    assert.equal(original.state, 'completed');
    assert.equal(original.output.reason, 'broker stopped');
    assert.equal(copy.state, 'created');
    assert.equal(copy.retry_limit, original.retry_limit, 'no retry spent');

    const replies: string[] = [];
    await producer.onWorkflowComplete({
      source: 'com.test.client',
      listener: (reply) => {
        replies.push(reply.subject);
      },
    });
    const successor = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    await successor.register(handler(QUEUE, async (received) => [replyTo(received, 'evt.slow.done')]));
    brokers.push(successor);
    const taking = Date.now();
    await successor.start();
    await waitFor('reply from the successor', () => replies.includes(event.subject), 10_000);
    assert.ok(Date.now() - taking < 10_000);
  });

  it('refuses unknown options and bad signal names', () => {
    const broker = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    assert.throws(() => broker.stopOnSignals({ timeout: 5 } as never), InvalidOptionError);
    assert.throws(() => broker.stopOnSignals({ signals: ['TERM' as never] }), InvalidOptionError);
    // Relative counts: the runtime may listen on SIGUSR2 itself (Node 24's test runner does).
    const before = process.listenerCount('SIGUSR2');
    const remove = broker.stopOnSignals({ signals: ['SIGUSR2'], exit: false });
    assert.equal(process.listenerCount('SIGUSR2'), before + 1);
    remove();
    assert.equal(process.listenerCount('SIGUSR2'), before);
  });
});
