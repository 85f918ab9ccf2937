import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { createArvoEvent, currentOpenTelemetryHeaders } from 'arvo-core';
import {
  BrokerNotStartedError,
  ConcurrentResolveError,
  DatabaseUnavailableError,
  PostgresEventBroker,
  ResolveTimeoutError,
} from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { createServiceFixture } from '../support/orchestrator';
import { freePort } from '../support/postgres-server';
import { recordSpans } from '../support/telemetry';
import {
  abandonedQueue,
  clientEvent,
  handler,
  jobsIn,
  listenToClient,
  memoryLogger,
  replyTo,
  useTestDatabase,
  waitFor,
} from './support';

const exporter = recordSpans();

function traceHeaders(): { traceparent?: string; tracestate?: string } {
  const { traceparent, tracestate } = currentOpenTelemetryHeaders();
  return { ...(traceparent ? { traceparent } : {}), ...(tracestate ? { tracestate } : {}) };
}

describe('PostgresEventBroker: lifecycle, retention, tracing', () => {
  const suite = useTestDatabase('broker_lifecycle');

  /** A broker for one test, maintenance every second, with `setup`'s registrations and the test client's queue. */
  function startLifecycleBroker(
    t: TestContext,
    setup: (broker: PostgresEventBroker) => Promise<unknown> = async () => {},
  ): Promise<PostgresEventBroker> {
    return suite.startBroker(t, { maintenanceIntervalSeconds: 1 }, async (b) => {
      await setup(b);
      await listenToClient(b);
    });
  }

  it('keeps one trace id across hops, with producer and consumer spans', async (t) => {
    // Service A forwards to service B, which answers the client (B's reply goes to `redirectto`).
    const forward = handler('com.trace.a', async (event) => [
      createArvoEvent(
        {
          source: 'com.trace.a',
          type: 'com.trace.b',
          subject: event.subject,
          to: 'com.trace.b',
          redirectto: event.source,
          data: {},
          ...traceHeaders(),
        },
        {},
        { disable: true },
      ),
    ]);
    const broker = await startLifecycleBroker(t, async (b) => {
      await b.register(forward);
      await b.register(createServiceFixture('com.trace.b'));
    });
    exporter.reset();
    const event = clientEvent('com.trace.a');
    assert.equal(event.traceparent, null);
    const reply = await broker.resolve(event, { timeoutMs: 15_000 });
    // The reply can reach the client before com.trace.b's consumer span has ended (it ends after the
    // commit that made the reply fetchable): wait for the three consumer spans.
    const spans = await waitFor('three consumer spans', () => {
      const finished = exporter.getFinishedSpans();
      return finished.filter((span) => span.name.endsWith(' process')).length >= 3 && finished;
    });
    const consumers = spans.filter((span) => span.name.endsWith(' process'));
    const producers = spans.filter((span) => span.name.endsWith(' send'));
    assert.deepEqual(consumers.map((span) => span.attributes['messaging.destination.name']).sort(), [
      'com.test.client',
      'com.trace.a',
      'com.trace.b',
    ]);
    assert.deepEqual(producers.map((span) => span.name).sort(), [
      'com.test.client send',
      'com.trace.a send',
      'com.trace.b send',
    ]);
    const traceIds = new Set([...consumers, ...producers].map((span) => span.spanContext().traceId));
    assert.equal(traceIds.size, 1, `trace ids: ${[...traceIds].join(', ')}`);
    const [traceId] = traceIds;
    assert.equal(reply.traceparent?.split('-')[1], traceId);
    const consumer = consumers.find(
      (span) => span.attributes['messaging.destination.name'] === 'com.trace.a',
    )!;
    assert.equal(consumer.attributes['messaging.system'], 'pg-boss');
    assert.equal(consumer.attributes['messaging.message.id'], event.id);
    // arvo's own handler span (inheritFrom: 'CONTEXT') is in the same trace.
    const arvoSpans = spans.filter((span) => !span.name.endsWith(' process') && !span.name.endsWith(' send'));
    assert.ok(arvoSpans.length > 0);
    assert.ok(arvoSpans.every((span) => span.spanContext().traceId === traceId));
  });

  it('resolve() rejects with ResolveTimeoutError when no reply comes', async (t) => {
    const broker = await startLifecycleBroker(t, (b) =>
      b.register(handler('com.test.silent', async () => [])),
    );
    await assert.rejects(
      broker.resolve(clientEvent('com.test.silent'), { timeoutMs: 500 }),
      ResolveTimeoutError,
    );
  });

  it('resolve() refuses a second concurrent call on one subject instead of swapping replies', async (t) => {
    // Answers after a delay that makes concurrent requests overlap, with what it was asked.
    const slowEcho = handler('com.test.slowecho', async (event) => {
      await new Promise((resolve) => setTimeout(resolve, Number((event.data as any).delayMs)));
      return [replyTo(event, 'evt.slowecho.done', { asked: (event.data as any).n })];
    });
    const broker = await startLifecycleBroker(t, (b) => b.register(slowEcho));
    const subject = `shared-${Math.random().toString(36).slice(2)}`;
    const first = broker.resolve(clientEvent('com.test.slowecho', { n: 1, delayMs: 1500 }, { subject }), {
      timeoutMs: 20_000,
    });
    const second = broker.resolve(clientEvent('com.test.slowecho', { n: 2, delayMs: 0 }, { subject }), {
      timeoutMs: 20_000,
    });
    await assert.rejects(second, ConcurrentResolveError);
    assert.equal(((await first).data as any).asked, 1, 'the first call gets its own reply');
    // Other subjects run concurrently, each with its own reply; the subject is free again afterwards.
    const replies = await Promise.all(
      [3, 4, 5].map((n) =>
        broker.resolve(clientEvent('com.test.slowecho', { n, delayMs: 300 }), { timeoutMs: 20_000 }),
      ),
    );
    assert.deepEqual(
      replies.map((reply) => (reply.data as any).asked),
      [3, 4, 5],
    );
    const again = await broker.resolve(clientEvent('com.test.slowecho', { n: 6, delayMs: 0 }, { subject }), {
      timeoutMs: 20_000,
    });
    assert.equal((again.data as any).asked, 6);
  });

  it('retries, then dead-letters, a reply that no resolve() waits for (never drops it)', async (t) => {
    const broker = await startLifecycleBroker(t, (b) =>
      b.register(handler('com.test.silent', async () => [])),
    );
    const asked = clientEvent('com.test.silent', {}, { source: 'com.test.asker' });
    await assert.rejects(broker.resolve(asked, { timeoutMs: 300 }), ResolveTimeoutError);
    const late = clientEvent(
      'com.test.asker',
      { answer: 42 },
      { subject: asked.subject, type: 'evt.late.reply' },
    );
    await broker.dispatch(late);
    const letter = await waitFor(
      'the unclaimed reply dead-lettered',
      async () =>
        (await broker.deadLetters.list({ sourceQueue: 'com.test.asker' })).find(
          (entry) => entry.event.id === late.id,
        ),
      30_000,
    );
    assert.equal(letter.attempts, 4, 'retried like an infrastructure failure first');
    assert.match(letter.error!.message, /no resolve\(\) here waits for its subject/);
    // A listener may adopt that queue later, but not with options it could no longer apply.
    await assert.rejects(
      broker.onWorkflowComplete({
        source: 'com.test.asker',
        listener: () => {},
        options: { worker: { batchSize: 1 } },
      }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'options',
    );
  });

  it('dead-letters events that waited past retentionSeconds (kind expired, event intact); replayed, they are delivered', async (t) => {
    const broker = await startLifecycleBroker(t);
    // The consumer registered the queue (retention 2 s), then went away: nothing serves it now.
    await abandonedQueue(suite.db.url, 'com.test.away', { queue: { retentionSeconds: 2 } });
    const events = [1, 2, 3].map((n) => clientEvent('com.test.away', { n, text: 'kept é 🙂' }));
    for (const event of events) await broker.dispatch(event);
    // This broker never registered com.test.away: its sweep covers every queue of the database.
    const letters = await waitFor(
      'expired events dead-lettered',
      async () => {
        const list = await broker.deadLetters.list({ sourceQueue: 'com.test.away' });
        return list.length === events.length ? list : undefined;
      },
      30_000,
    );
    for (const letter of letters) {
      const event = events.find((candidate) => candidate.id === letter.event.id)!;
      // Intact: as dispatched, plus the producer span's trace headers the broker gives an event without any.
      assert.deepEqual({ ...letter.event, traceparent: null }, event.toJSON(), 'the event is intact');
      assert.equal(letter.failure?.kind, 'expired');
      assert.equal(letter.error?.name, 'EventExpiredError');
      assert.match(letter.error!.message, /retentionSeconds \(2 s\) without being delivered/);
    }
    const left = await jobsIn(suite.pool, 'com.test.away');
    assert.deepEqual(
      left.map((job) => job.state),
      ['failed', 'failed', 'failed'],
      'nothing left waiting; the originals are kept as failed, not deleted',
    );
    // Replayed once a consumer is back: delivered.
    const delivered: string[] = [];
    const away = handler('com.test.away', async (event) => {
      delivered.push(event.id);
      return [];
    });
    await suite.startBroker(t, {}, (b) => b.register(away, { queue: { retentionSeconds: 3600 } }));
    const replayed = await broker.deadLetters.replay({ all: true, sourceQueue: 'com.test.away' });
    assert.equal(replayed.length, events.length);
    await waitFor('replayed events delivered', () => delivered.length === events.length, 30_000);
    assert.deepEqual(delivered.sort(), events.map((event) => event.id).sort());
  });

  it('deletes completed jobs after deleteAfterSeconds (maintenance really runs)', async (t) => {
    const shortLived = handler('com.test.shortlived', async (event) => [
      replyTo(event, 'evt.shortlived.done'),
    ]);
    const broker = await startLifecycleBroker(t, (b) =>
      b.register(shortLived, { queue: { deleteAfterSeconds: 1 } }),
    );
    const event = clientEvent('com.test.shortlived');
    await broker.resolve(event, { timeoutMs: 15_000 });
    const [job] = await jobsIn(suite.pool, 'com.test.shortlived');
    assert.equal(job?.id, event.id);
    await waitFor(
      'retention sweep',
      async () => (await jobsIn(suite.pool, 'com.test.shortlived')).length === 0,
      30_000,
      250,
    );
  });
});

describe('PostgresEventBroker: stop and availability', () => {
  const suite = useTestDatabase('broker_stop');

  /**
   * A broker whose handler on `queue` takes `ms`, then replies to the client; returns once the
   * handler is running on `event`. `finished()` says whether it has returned.
   */
  async function handlerRunning(t: TestContext, queue: string, ms: number) {
    let started = false;
    let finished = false;
    const slow = handler(queue, async (event) => {
      started = true;
      await new Promise((resolve) => setTimeout(resolve, ms));
      finished = true;
      return [replyTo(event, `evt.${queue}.done`)];
    });
    const broker = await suite.startBroker(t, {}, async (b) => {
      await b.register(slow);
      await listenToClient(b);
    });
    const event = clientEvent(queue);
    await broker.dispatch(event);
    await waitFor('handler start', () => started);
    return { broker, event, finished: () => finished };
  }

  it('runs the default 20 jobs of a queue at once without a MaxListenersExceededWarning', async (t) => {
    // Every job in flight listens for the broker's stop: with defaults (10 per fetch × 2 fetch loops)
    // that is more than Node's default of 10 listeners, which must not read as a leak to users.
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    let running = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const broker = await suite.startBroker(t, {}, (b) =>
      b.register(
        handler('com.listeners.slow', async () => {
          running += 1;
          await gate;
          return [];
        }),
      ),
    );
    // One insert, so each fetch loop finds a full batch.
    await broker.dispatchMany(Array.from({ length: 20 }, () => clientEvent('com.listeners.slow')));
    await waitFor(
      () => `more than 10 handlers running at once (have ${running})`,
      () => running > 10,
      30_000,
    );
    release();
    await waitFor('the jobs completed', async () =>
      (await jobsIn(suite.pool, 'com.listeners.slow')).every((job) => job.state === 'completed'),
    );
    // Node emits the warning on the next tick after the eleventh listener.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      warnings.filter((warning) => warning.startsWith('MaxListenersExceededWarning')),
      [],
    );
  });

  it('stop() lets an in-flight handler finish and commits its outputs', async (t) => {
    const { broker, event, finished } = await handlerRunning(t, 'com.stop.slow', 1500);
    await broker.stop({ timeoutMs: 10_000 });
    assert.equal(finished(), true);
    const [job] = await jobsIn(suite.pool, 'com.stop.slow');
    assert.equal(job.state, 'completed');
    const replies = (await jobsIn(suite.pool, 'com.test.client')).filter(
      (j) => j.data.subject === event.subject,
    );
    assert.equal(replies.length, 1);
    await assert.rejects(broker.dispatch(clientEvent('com.stop.slow')), BrokerNotStartedError);
  });

  it('at the stop deadline the job is handed back, due at once with its retries intact, and the handler transaction rolls back', async (t) => {
    const { broker, event, finished } = await handlerRunning(t, 'com.stop.stuck', 2500);
    const stopping = Date.now();
    await broker.stop({ timeoutMs: 1000 });
    await waitFor('handler end', finished);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const [job, copy] = await jobsIn(suite.pool, 'com.stop.stuck');
    assert.equal(job.state, 'completed');
    assert.deepEqual(job.output, { rescheduledAs: copy.id, reason: 'broker stopped' });
    assert.equal(copy.state, 'created');
    assert.equal(copy.data.id, event.id);
    assert.equal(copy.retry_count, 0);
    assert.equal(copy.retry_limit, job.retry_limit);
    assert.ok(
      copy.start_after.getTime() <= stopping + 5000,
      'the copy is due at once, not after a retry delay',
    );
    assert.equal(
      (await jobsIn(suite.pool, 'com.test.client')).filter((j) => j.data.subject === event.subject).length,
      0,
    );
  });

  it('start() throws DatabaseUnavailableError without leaking the password', async () => {
    const port = await freePort();
    const broker = new PostgresEventBroker({
      connectionString: `postgres://app:v3ry-s3cret@127.0.0.1:${port}/none`,
      connectionTimeoutMillis: 2000,
      logger: memoryLogger(),
    });
    await assert.rejects(broker.start(), (error: unknown) => {
      assert.ok(error instanceof DatabaseUnavailableError, String(error));
      assert.ok(!String((error as Error).message).includes('v3ry-s3cret'));
      return true;
    });
  });
});
