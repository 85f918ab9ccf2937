import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import { PgBoss } from 'pg-boss';
import { jobIdForEvent } from '../../src/broker/event-codec';
import {
  BrokerNotStartedError,
  DuplicateRegistrationError,
  InternalQueueError,
  InvalidEventError,
  PayloadTooLargeError,
  PostgresEventBroker,
  UnroutableEventError,
} from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { createServiceFixture } from '../support/orchestrator';
import { clientEvent, handler, jobsIn, memoryLogger, replyTo, useTestDatabase, waitFor } from './support';

describe('PostgresEventBroker: options and lifecycle', () => {
  it('rejects unknown and invalid options naming the option', () => {
    assert.throws(
      () => new PostgresEventBroker({ connectionString: 'postgres://x@localhost/db', batchSize: 3 } as any),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'batchSize',
    );
    assert.throws(
      () => new PostgresEventBroker({ connectionString: 'postgres://x@localhost/db', schema: 'a;drop' }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'schema',
    );
    assert.throws(
      () =>
        new PostgresEventBroker({
          connectionString: 'postgres://x@localhost/db',
          defaults: { worker: { batchSize: 0 } },
        }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'defaults.worker.batchSize',
    );
    assert.throws(
      () =>
        new PostgresEventBroker({ connectionString: 'postgres://x@localhost/db', deadLetterQueue: 'a b' }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'deadLetterQueue',
    );
    // pg-boss skips colliding inserts under these policies: accepted events would vanish.
    for (const policy of ['short', 'stately', 'exclusive']) {
      assert.throws(
        () =>
          new PostgresEventBroker({
            connectionString: 'postgres://x@localhost/db',
            defaults: { queue: { policy: policy as 'standard' } },
          }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === 'defaults.queue.policy',
      );
    }
  });

  it('rejects what is not a handler, listener or logger', async () => {
    const broker = new PostgresEventBroker({ connectionString: 'postgres://x@localhost/db' });
    await assert.rejects(broker.register({ source: 'com.x.y' } as any), InvalidOptionError);
    await assert.rejects(broker.register(handler('bad name!', async () => [])), InvalidOptionError);
    await assert.rejects(broker.onWorkflowComplete({ source: 'com.x.y' } as any), InvalidOptionError);
    assert.throws(() => broker.setLogger({} as any), InvalidOptionError);
    await assert.rejects(
      broker.register(
        handler('com.x.y', async () => []),
        { worker: { retryLimit: -1 } },
      ),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'worker.retryLimit',
    );
  });

  it('refuses dispatch before start', async () => {
    const broker = new PostgresEventBroker({ connectionString: 'postgres://x@localhost/db' });
    await assert.rejects(broker.dispatch(clientEvent('com.test.echo')), BrokerNotStartedError);
  });
});

describe('PostgresEventBroker: routing, dispatch and validation', () => {
  const suite = useTestDatabase('broker_routing');

  /**
   * A broker for one test (payloads up to 4 KiB) with `setup`'s registrations, serving the test
   * client's completion queue, com.test.client: the replies that reach it are in `completions`.
   */
  async function startClientBroker(
    t: TestContext,
    setup: (broker: PostgresEventBroker) => Promise<unknown> = async () => {},
  ): Promise<{ broker: PostgresEventBroker; completions: ArvoEvent[] }> {
    const completions: ArvoEvent[] = [];
    const broker = await suite.startBroker(t, { maxPayloadBytes: 4096 }, async (b) => {
      await b.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void completions.push(event),
      });
      await setup(b);
    });
    return { broker, completions };
  }

  it('serves one queue per handler source plus the completion queue', async (t) => {
    const { broker } = await startClientBroker(t, async (b) => {
      await b.register(createServiceFixture('com.test.echo'));
      await b.register(handler('com.test.lost', async () => []));
    });
    assert.deepEqual(broker.queues.sort(), ['com.test.client', 'com.test.echo', 'com.test.lost']);
  });

  it('refuses a second handler for the same source', async (t) => {
    const { broker } = await startClientBroker(t, (b) => b.register(createServiceFixture('com.test.echo')));
    await assert.rejects(broker.register(createServiceFixture('com.test.echo')), DuplicateRegistrationError);
  });

  it('routes by `to`, rebuilds the event losslessly, and delivers the reply to the initiator', async (t) => {
    const { broker, completions } = await startClientBroker(t, (b) =>
      b.register(createServiceFixture('com.test.echo')),
    );
    const event = clientEvent('com.test.echo', { n: 1, nested: { list: [1, 'two'] } });
    const reply = await broker.resolve(event, { timeoutMs: 15_000 });
    assert.equal(reply.type, 'evt.com.test.echo.success');
    assert.equal(reply.subject, event.subject);
    assert.deepEqual((reply.data as any).input, { n: 1, nested: { list: [1, 'two'] } });
    const job = (await jobsIn(suite.pool, 'com.test.echo')).find((row) => row.data.id === event.id);
    assert.equal(job.id, event.id);
    assert.deepEqual(job.data, event.toJSON());
    assert.equal(job.state, 'completed');
    await waitFor('completion listener', () => completions.some((c) => c.subject === event.subject));
  });

  it('accepts arvo 3 handlers returning { events }', async (t) => {
    // arvo 3 shape: { events }
    const v3 = handler('com.test.v3', async (event) => ({
      events: [replyTo(event, 'evt.v3.done', { v: 3 })],
    }));
    const { broker } = await startClientBroker(t, (b) => b.register(v3));
    const reply = await broker.resolve(clientEvent('com.test.v3'), { timeoutMs: 15_000 });
    assert.deepEqual(reply.data, { v: 3 });
  });

  it('enqueues the same event once however often it is dispatched', async (t) => {
    const { broker, completions } = await startClientBroker(t, (b) =>
      b.register(createServiceFixture('com.test.echo')),
    );
    const event = clientEvent('com.test.echo', { once: true });
    const first = await broker.dispatch(event);
    const second = await broker.dispatch(event);
    assert.equal(first, second);
    assert.equal(first, event.id);
    await waitFor('reply', () => completions.some((c) => c.subject === event.subject));
    const { rows } = await suite.pool.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE id = $1`, [
      event.id,
    ]);
    assert.equal(rows[0].n, 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(completions.filter((c) => c.subject === event.subject).length, 1);
  });

  it('derives a name-based UUID job id for non-UUID event ids', () => {
    const id = jobIdForEvent('order-42');
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(jobIdForEvent('order-42'), id);
    assert.notEqual(jobIdForEvent('order-43'), id);
  });

  it('rejects what is not an event, unroutable destinations and oversized payloads at dispatch', async (t) => {
    const { broker } = await startClientBroker(t, (b) => b.register(createServiceFixture('com.test.echo')));
    await assert.rejects(broker.dispatch({ id: 'x' } as any), InvalidEventError);
    await assert.rejects(broker.dispatch(clientEvent('com.nobody.home')), (error: unknown) => {
      assert.ok(error instanceof UnroutableEventError);
      assert.equal(error.destination, 'com.nobody.home');
      return true;
    });
    await assert.rejects(
      broker.dispatch(clientEvent('com.test.echo', { blob: 'y'.repeat(5000) })),
      (error: unknown) => {
        assert.ok(error instanceof PayloadTooLargeError);
        assert.equal(error.limit, 4096);
        assert.ok(error.bytes > 5000);
        return true;
      },
    );
  });

  it('refuses dispatch to an internal queue (dead-letter, unroutable, domained) and keeps such outputs as unroutable', async (t) => {
    const forger = handler('com.test.forger', async (event) => [
      replyTo(event, 'evt.forged.out', {}, 'arvo.dead-letter'),
    ]);
    const { broker } = await startClientBroker(t, (b) => b.register(forger));
    // A per-queue dead-letter queue that only another process's registration created.
    const boss = new PgBoss({ connectionString: suite.db.url, supervise: false, schedule: false, max: 1 });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue('com.other.dlq');
    await boss.createQueue('com.other.work', { deadLetter: 'com.other.dlq' });
    await boss.stop({ graceful: false, close: true });
    for (const queue of ['arvo.dead-letter', 'arvo.unroutable', 'arvo.domained', 'com.other.dlq']) {
      const event = clientEvent(queue, {}, { type: 'com.test.forged' });
      await assert.rejects(broker.dispatch(event), (error: unknown) => {
        assert.ok(error instanceof InternalQueueError, `${queue}: ${error}`);
        assert.equal(error.destination, queue);
        return true;
      });
    }
    const forged = clientEvent('com.test.forger');
    await broker.dispatch(forged);
    const kept = await waitFor('the forged output kept as unroutable', async () =>
      (await jobsIn(suite.pool, 'arvo.unroutable')).find((job) => job.data.subject === forged.subject),
    );
    assert.equal(kept.data.to, 'arvo.dead-letter');
    const fake = (await jobsIn(suite.pool, 'arvo.dead-letter')).filter((job) =>
      ['arvo.dead-letter', 'arvo.unroutable', 'arvo.domained', 'com.other.dlq'].includes(job.data.to),
    );
    assert.deepEqual(fake, [], 'no dead letter was forged');
  });

  it('dead-letters a job whose output is over the payload limit, with the reason', async (t) => {
    const big = handler('com.test.big', async (event) => [
      replyTo(event, 'evt.big.done', { blob: 'x'.repeat(5000) }),
    ]);
    const { broker } = await startClientBroker(t, (b) => b.register(big));
    const event = clientEvent('com.test.big');
    await broker.dispatch(event);
    const dead = await waitFor('dead letter', async () =>
      (await jobsIn(suite.pool, 'arvo.dead-letter')).find((job) => job.data.id === event.id),
    );
    assert.equal(dead.source_name, 'com.test.big');
    assert.equal(dead.source_retry_count, 0);
    assert.equal(dead.source_output.kind, 'invalidEvent');
    assert.equal(dead.source_output.error.name, 'PayloadTooLargeError');
    assert.equal(
      (await jobsIn(suite.pool, 'com.test.client')).some((job) => job.data.type === 'evt.big.done'),
      false,
    );
  });

  it('keeps events for a destination without a queue anywhere as unroutable and tells the listener', async (t) => {
    const notFound: Array<{ event: ArvoEvent; destination: string | null }> = [];
    const lost = handler('com.test.lost', async (event) => [
      replyTo(event, 'evt.lost.out', {}, 'com.nobody.home'),
    ]);
    const { broker } = await startClientBroker(t, async (b) => {
      await b.register(lost);
      b.onHandlerNotFound(
        (event, details) => void notFound.push({ event, destination: details.destination }),
      );
    });
    const event = clientEvent('com.test.lost');
    await broker.dispatch(event);
    const kept = await waitFor('unroutable job', async () =>
      (await jobsIn(suite.pool, 'arvo.unroutable')).find((job) => job.data.subject === event.subject),
    );
    assert.equal(kept.data.to, 'com.nobody.home');
    await waitFor('listener', () => notFound.find((entry) => entry.event.subject === event.subject));
    assert.equal(
      notFound.find((entry) => entry.event.subject === event.subject)?.destination,
      'com.nobody.home',
    );
  });

  it('routes to a queue registered by another broker instance in the same database', async (t) => {
    const { broker } = await startClientBroker(t, (b) => b.register(createServiceFixture('com.test.echo')));
    // Created by another process's registration: only the database knows about it.
    const seen: ArvoEvent[] = [];
    const elsewhere = handler('com.test.elsewhere', async (event) => {
      seen.push(event);
      return [replyTo(event, 'evt.elsewhere.done')];
    });
    await suite.startBroker(t, {}, (b) => b.register(elsewhere));
    const reply = await broker.resolve(clientEvent('com.test.echo', { chain: true }), {
      timeoutMs: 15_000,
    });
    assert.equal(reply.type, 'evt.com.test.echo.success');
    const event = clientEvent('com.test.elsewhere');
    const answer = await broker.resolve(event, { timeoutMs: 15_000 });
    assert.equal(answer.type, 'evt.elsewhere.done');
    assert.equal(seen[0]?.id, event.id);
  });

  it('re-registering with changed options updates the queue and keeps its pending jobs', async (t) => {
    const { broker, completions } = await startClientBroker(t);
    const reconfigured = (n: number) =>
      handler('com.test.reconf', async (event) => [replyTo(event, 'evt.reconf.done', { n })]);
    const first = new PostgresEventBroker({ connectionString: suite.db.url, logger: memoryLogger() });
    await first.register(reconfigured(1), { worker: { retryLimit: 5 }, queue: { deleteAfterSeconds: 100 } });
    await first.start();
    await first.stop({ timeoutMs: 2000 });
    const queueRow = async () =>
      (
        await suite.pool.query(
          `SELECT retry_limit, deletion_seconds FROM pgboss.queue WHERE name = 'com.test.reconf'`,
        )
      ).rows[0];
    assert.deepEqual(await queueRow(), { retry_limit: 5, deletion_seconds: 100 });
    // Nobody serves the queue now: the job waits.
    const event = clientEvent('com.test.reconf');
    await broker.dispatch(event);
    const second = new PostgresEventBroker({ connectionString: suite.db.url, logger: memoryLogger() });
    // @arvo-tools/postgres's examples pass recreateQueue: true, which would delete the waiting job.
    for (const [register, what] of [
      [() => second.register(reconfigured(2), { recreateQueue: true } as never), 'register'],
      [
        () =>
          second.onWorkflowComplete({
            source: 'com.test.reconf.client',
            listener: async () => {},
            options: { recreateQueue: true } as never,
          }),
        'onWorkflowComplete',
      ],
    ] as const) {
      await assert.rejects(
        register(),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === 'recreateQueue' &&
          /deletes every job waiting in it/.test(error.message) &&
          /Remove the option: registering again with changed `queue` options updates the queue/.test(
            error.message,
          ),
        what,
      );
    }
    await second.register(reconfigured(2), { worker: { retryLimit: 1 }, queue: { deleteAfterSeconds: 200 } });
    await second.start();
    try {
      assert.deepEqual(await queueRow(), { retry_limit: 1, deletion_seconds: 200 });
      const reply = await waitFor('reply from the re-registered handler', () =>
        completions.find((c) => c.subject === event.subject),
      );
      assert.deepEqual(reply.data, { n: 2 });
    } finally {
      await second.stop({ timeoutMs: 2000 });
    }
  });

  it('refuses unknown keys in every per-call options object (register, onWorkflowComplete, resolve, stop); recreateQueue: false passes', async (t) => {
    const { broker } = await startClientBroker(t);
    const unstarted = new PostgresEventBroker({ connectionString: suite.db.url, logger: memoryLogger() });
    const source = handler('com.test.unknownkeys', async () => []);
    const refusals: Array<[() => Promise<unknown>, string]> = [
      [() => unstarted.register(source, { workers: { batchSize: 1 } } as never), 'workers'],
      [
        () =>
          unstarted.onWorkflowComplete({ source: 'com.test.uk', listener: () => {}, option: {} } as never),
        'option',
      ],
      [
        () =>
          unstarted.onWorkflowComplete({
            source: 'com.test.uk',
            listener: () => {},
            options: { worker: {}, x: 1 } as never,
          }),
        'x',
      ],
      [() => broker.resolve(clientEvent('com.test.silent'), { timeout: 5 } as never), 'options.timeout'],
      [() => unstarted.stop({ timeout: 5 } as never), 'options.timeout'],
    ];
    for (const [call, option] of refusals) {
      await assert.rejects(
        call(),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
    await unstarted.register(source, { recreateQueue: false } as never);
  });

  it('subjectConcurrency 1 (the default of orchestrator queues) keeps a fetch to one job per subject; without it one fetch takes several', async (t) => {
    const { broker } = await startClientBroker(t);
    const running = new Map<string, number>();
    const peak = new Map<string, number>();
    const tracking = (source: string) =>
      handler(source, async (event) => {
        const now = (running.get(source) ?? 0) + 1;
        running.set(source, now);
        peak.set(source, Math.max(peak.get(source) ?? 0, now));
        await new Promise((resolve) => setTimeout(resolve, 100));
        running.set(source, (running.get(source) ?? 1) - 1);
        return [replyTo(event, 'evt.tracked.done')];
      });
    // One fetch loop with room for all six jobs: only the subject limit can keep them apart. (pg-boss
    // checks the limit when it fetches, so two fetches racing each other can both pass it; the
    // orchestrator's lock, not this limit, is what serializes a workflow.)
    const oneLoop = { localConcurrency: 1, batchSize: 6 };
    await suite.startBroker(t, {}, async (b) => {
      await b.register(tracking('com.test.serial'), { worker: { ...oneLoop, subjectConcurrency: 1 } });
      await b.register(tracking('com.test.parallel'), { worker: oneLoop });
      // Orchestrator queues get subjectConcurrency 1 by default: replies to a workflow wait in turn.
      await b.register(tracking('arvo.orc.tracked'), { worker: oneLoop });
    });
    for (const source of ['com.test.serial', 'com.test.parallel', 'arvo.orc.tracked']) {
      const events = Array.from({ length: 6 }, () =>
        clientEvent(source, {}, { subject: `shared-${source}` }),
      );
      await Promise.all(events.map((event) => broker.dispatch(event)));
      await waitFor(`${source} done`, async () => {
        const jobs = await jobsIn(suite.pool, source);
        return jobs.length === 6 && jobs.every((job) => job.state === 'completed');
      });
    }
    assert.equal(peak.get('com.test.serial'), 1);
    assert.equal(peak.get('arvo.orc.tracked'), 1, 'orchestrator queues default to one job per subject');
    assert.ok((peak.get('com.test.parallel') ?? 0) > 1, `parallel peak ${peak.get('com.test.parallel')}`);
  });
});
