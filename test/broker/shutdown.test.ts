/**
 * Graceful shutdown of a real worker process: SIGTERM mid-handler hands the job back to its queue at
 * once (no retry spent, nothing left `active` until expiry), and another process finishes it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PostgresEventBroker } from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import {
  clientEvent,
  handler,
  jobsIn,
  memoryLogger,
  replyTo,
  spawnWorker,
  useTestDatabase,
  waitFor,
} from './support';

const QUEUE = 'com.shutdown.slow';

describe('PostgresEventBroker.stopOnSignals', () => {
  const suite = useTestDatabase('broker_shutdown');

  it('SIGTERM mid-handler: the process exits, nothing stays active, another process finishes the job within seconds', async (t) => {
    const { child, output } = spawnWorker('shutdown-worker.ts', suite.db.url);
    t.after(() => child.kill('SIGKILL'));
    await waitFor('worker ready', () => output().includes('ready'), 30_000);
    const producer = await suite.startBroker(t);
    const event = clientEvent(QUEUE);
    await producer.dispatch(event);
    await waitFor('handler started', () => output().includes('started'), 30_000);

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const signalled = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    // timeoutMs 2000 + pg-boss's grace + drain: far below expireInSeconds (300 s).
    assert.ok(Date.now() - signalled < 15_000, `exited after ${Date.now() - signalled} ms`);

    const jobs = await jobsIn(suite.pool, QUEUE);
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
    const successor = handler(QUEUE, async (received) => [replyTo(received, 'evt.slow.done')]);
    const taking = Date.now();
    await suite.startBroker(t, {}, (b) => b.register(successor));
    await waitFor('reply from the successor', () => replies.includes(event.subject), 10_000);
    assert.ok(Date.now() - taking < 10_000);
  });

  it('refuses unknown options and bad signal names', () => {
    const broker = new PostgresEventBroker({ connectionString: suite.db.url, logger: memoryLogger() });
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
