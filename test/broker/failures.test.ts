import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import { ConfigViolation, ContractViolation, ExecutionViolation } from 'arvo-event-handler';
import { PgBoss } from 'pg-boss';
import type { PostgresEventBroker, PostgresEventBrokerOptions } from '../../src/broker/index';
import { deadLetterAttemptsSql } from '../../src/broker/pgboss';
import { TransactionViolation } from '../support/orchestrator';
import { recordStatements, statementShapes } from '../support/statements';
import {
  clientEvent,
  handler,
  jobsIn,
  listenToClient,
  memoryLogger,
  newPool,
  replyTo,
  startTestBroker,
  useTestDatabase,
  waitFor,
} from './support';

const SECRET_URL = 'postgres://app:s3cr3t-pw-123@db.internal:5432/app';

/** The attempts one test's handlers saw, by event id: when each began. */
function attemptTimes() {
  const times = new Map<string, number[]>();
  return {
    /** Notes an attempt at `event`; returns how many there have been. */
    count(event: ArvoEvent): number {
      const list = times.get(event.id) ?? [];
      list.push(Date.now());
      times.set(event.id, list);
      return list.length;
    },
    of: (event: ArvoEvent): number[] => times.get(event.id) ?? [],
  };
}

/** A handler on `source` that notes each attempt in `attempts` and throws `make()`. */
function throwing(source: string, make: () => Error, attempts = attemptTimes()) {
  return handler(source, async (event) => {
    attempts.count(event);
    throw make();
  });
}

/** A promise that stays pending until `release()`, which the test's end calls too. */
function gate(t: TestContext): { blocked: Promise<void>; release: () => void } {
  let release = () => {};
  const blocked = new Promise<void>((resolve) => {
    release = resolve;
  });
  // Registered before the test's broker: released first, so its stop finds no handler waiting.
  t.after(() => release());
  return { blocked, release };
}

describe('PostgresEventBroker: error policy, dead letters, stats', () => {
  const suite = useTestDatabase('broker_failures');

  /** A broker with the error policy these tests exercise: two retries with backoff from 1 s, quick lock-contention reschedules. */
  function startPolicyBroker(
    t: TestContext,
    setup: (broker: PostgresEventBroker) => Promise<unknown>,
    options: Partial<PostgresEventBrokerOptions> = {},
  ): Promise<PostgresEventBroker> {
    return suite.startBroker(
      t,
      {
        defaults: { worker: { retryLimit: 2, retryDelay: 1, retryBackoff: true } },
        lockContention: { minDelayMs: 20, maxDelayMs: 60 },
        ...options,
      },
      setup,
    );
  }

  async function deadLetterOf(event: ArvoEvent): Promise<any> {
    return waitFor(
      `dead letter of ${event.to}`,
      async () => (await jobsIn(suite.pool, 'arvo.dead-letter')).find((job) => job.data.id === event.id),
      30_000,
    );
  }

  for (const [queue, kind, name, make] of [
    [
      'com.fail.contract',
      'contract',
      'ViolationError<Contract>',
      () => new ContractViolation('data does not match'),
    ],
    ['com.fail.config', 'config', 'ViolationError<Config>', () => new ConfigViolation('wrong destination')],
    [
      'com.fail.execution',
      'execution',
      'ViolationError<Execution>',
      () => new ExecutionViolation('deliberate'),
    ],
  ] as const) {
    it(`dead-letters a ${kind} violation at once, without retries`, async (t) => {
      const attempts = attemptTimes();
      const broker = await startPolicyBroker(t, (b) => b.register(throwing(queue, make, attempts)));
      const event = clientEvent(queue);
      await broker.dispatch(event);
      const dead = await deadLetterOf(event);
      assert.equal(dead.source_name, queue);
      assert.equal(dead.source_id, event.id);
      assert.equal(dead.source_retry_count, 0);
      assert.equal(dead.source_output.kind, kind);
      assert.equal(dead.source_output.attempt, 1);
      assert.equal(dead.source_output.error.name, name);
      assert.deepEqual(dead.data, event.toJSON());
      assert.equal(attempts.of(event).length, 1);
      const [original] = await jobsIn(suite.pool, queue).then((jobs) =>
        jobs.filter((job) => job.id === event.id),
      );
      assert.equal(original.state, 'failed');
    });
  }

  it('retries other errors with backoff, then dead-letters them with a redacted error', async (t) => {
    const attempts = attemptTimes();
    const logger = memoryLogger();
    const broker = await startPolicyBroker(
      t,
      (b) => b.register(throwing('com.fail.infra', () => new Error(`cannot reach ${SECRET_URL}`), attempts)),
      { logger },
    );
    const event = clientEvent('com.fail.infra');
    await broker.dispatch(event);
    const dead = await deadLetterOf(event);
    const times = attempts.of(event);
    assert.equal(times.length, 3);
    // Exponential backoff from retryDelay 1 s: ≥ 1 s, then ≥ 2 s.
    assert.ok(times[1]! - times[0]! >= 900, `first retry after ${times[1]! - times[0]!} ms`);
    assert.ok(times[2]! - times[1]! >= 1900, `second retry after ${times[2]! - times[1]!} ms`);
    // Retries send no NOTIFY; the 1 s backstop poll picks them up soon after they come due
    // (backoff is at most 2 s, then 4 s; pg-boss's default 30 s poll would blow these bounds).
    assert.ok(times[1]! - times[0]! < 5000, `first retry after ${times[1]! - times[0]!} ms`);
    assert.ok(times[2]! - times[1]! < 8000, `second retry after ${times[2]! - times[1]!} ms`);
    assert.equal(dead.source_retry_count, 2);
    assert.equal(dead.source_output.kind, 'infrastructure');
    assert.equal(dead.source_output.attempt, 3);
    assert.ok(
      !JSON.stringify(dead.source_output).includes('s3cr3t-pw-123'),
      JSON.stringify(dead.source_output),
    );
    assert.match(dead.source_output.error.message, /:\/\/app:\[REDACTED\]@db\.internal/);
    const leaked = logger.lines.filter((line) => JSON.stringify(line).includes('s3cr3t-pw-123'));
    assert.deepEqual(leaked, []);
  });

  it("logs pg-boss's worker errors with their real message, redacted", async (t) => {
    const logger = memoryLogger();
    const broker = await startPolicyBroker(t, (b) => b.register(handler('com.fail.fetch', async () => [])), {
      logger,
    });
    // Every fetch from com.fail.fetch fails inside pg-boss's worker, which emits a plain copy of the error.
    await suite.pool.query(`
      CREATE FUNCTION public.refuse_fetch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.name = 'com.fail.fetch' AND NEW.state = 'active' THEN
          RAISE EXCEPTION 'fetch refused by ${SECRET_URL}';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_fetch BEFORE UPDATE ON pgboss.job FOR EACH ROW EXECUTE FUNCTION public.refuse_fetch();`);
    try {
      await broker.dispatch(clientEvent('com.fail.fetch'));
      const line = await waitFor('the pg-boss error logged', () =>
        logger.lines.find((entry) => String(entry[0]).includes('pg-boss error')),
      );
      const text = JSON.stringify(line);
      assert.match(text, /"message":"fetch refused by \S*:\/\/app:\[REDACTED\]@db\.internal/);
      assert.match(text, /"queue":"com\.fail\.fetch"/);
      assert.ok(!text.includes('[object Object]'), text);
      assert.ok(!text.includes('s3cr3t-pw-123'), text);
    } finally {
      await suite.pool.query('DROP TRIGGER refuse_fetch ON pgboss.job; DROP FUNCTION public.refuse_fetch()');
    }
  });

  it('fails a handler that overruns expireInSeconds with the library record (kind timeout), then dead-letters it', async (t) => {
    const attempts = attemptTimes();
    const { blocked } = gate(t);
    // Never returns while the test runs: each attempt overruns expireInSeconds.
    const hang = handler('com.fail.hang', async (event) => {
      attempts.count(event);
      await blocked;
      return [];
    });
    const broker = await startPolicyBroker(t, (b) =>
      b.register(hang, { worker: { expireInSeconds: 2, retryLimit: 1 } }),
    );
    const event = clientEvent('com.fail.hang');
    await broker.dispatch(event);
    const dead = await deadLetterOf(event);
    assert.equal(attempts.of(event).length, 2, 'retried once, like any failure');
    assert.equal(dead.source_output.kind, 'timeout');
    assert.equal(dead.source_output.attempt, 2);
    assert.equal(dead.source_output.error.name, 'HandlerTimeoutError');
    assert.equal(dead.source_output.history[0].kind, 'timeout');
    const [letter] = await broker.deadLetters.list({ sourceQueue: 'com.fail.hang' });
    assert.match(letter!.error!.message, /did not finish event .* within expireInSeconds \(2 s\)/);
  });

  it('retries a transaction violation (memory conflict) and consumes a retry', async (t) => {
    const attempts = attemptTimes();
    const conflictOnce = handler('com.fail.transactiononce', async (event) => {
      if (attempts.count(event) === 1)
        throw new TransactionViolation('WRITE_MACHINE_MEMORY_FAILURE', 'version conflict');
      return [replyTo(event, 'evt.transaction.done')];
    });
    const broker = await startPolicyBroker(t, async (b) => {
      await b.register(conflictOnce);
      await listenToClient(b);
    });
    const event = clientEvent('com.fail.transactiononce');
    await broker.dispatch(event);
    const job = await waitFor('completion', async () =>
      (await jobsIn(suite.pool, 'com.fail.transactiononce')).find(
        (j) => j.id === event.id && j.state === 'completed',
      ),
    );
    assert.equal(job.retry_count, 1);
    assert.equal(attempts.of(event).length, 2);
  });

  it('reschedules on lock contention without consuming the retry budget (retryLimit 0)', async (t) => {
    const attempts = attemptTimes();
    const contended = handler('com.fail.contended', async (event) => {
      if (attempts.count(event) <= 4)
        throw new TransactionViolation('LOCK_UNACQUIRED', 'locked by another holder');
      return [replyTo(event, 'evt.contended.done')];
    });
    const broker = await startPolicyBroker(t, async (b) => {
      await b.register(contended, { worker: { retryLimit: 0 } });
      await listenToClient(b);
    });
    const event = clientEvent('com.fail.contended');
    await broker.dispatch(event);
    await waitFor('reply after contention', async () =>
      (await jobsIn(suite.pool, 'com.test.client')).find((job) => job.data.subject === event.subject),
    );
    assert.equal(attempts.of(event).length, 5);
    const jobs = await jobsIn(suite.pool, 'com.fail.contended');
    assert.equal(jobs.length, 5, 'the original and four rescheduled copies');
    assert.ok(jobs.every((job) => job.state === 'completed'));
    assert.ok(jobs.every((job) => job.retry_count === 0));
    assert.equal(jobs.filter((job) => job.output?.reason === 'lock contention').length, 4);
    assert.equal(
      (await jobsIn(suite.pool, 'arvo.dead-letter')).filter((job) => job.data.id === event.id).length,
      0,
    );
  });

  it('keeps domained events durably and retries the listener when it throws', async (t) => {
    const domained: ArvoEvent[] = [];
    const broker = await startPolicyBroker(t, async (b) => {
      // arvo 3 marks such events with `domain`; on arvo 2 it is an extension of that name.
      await b.register(
        handler('com.test.domain', async (event) => [
          replyTo(event, 'evt.human.approval', { ask: 'ok?' }, undefined, { domain: 'human.interaction' }),
        ]),
      );
      await b.onDomainedEvent(async (event) => {
        domained.push(event);
        if (domained.length === 1) throw new Error('listener crashed');
      });
    });
    const event = clientEvent('com.test.domain');
    await broker.dispatch(event);
    const job = await waitFor('domained job completed', async () =>
      (await jobsIn(suite.pool, 'arvo.domained')).find(
        (j) => j.data.subject === event.subject && j.state === 'completed',
      ),
    );
    assert.equal(job.retry_count, 1);
    assert.equal(job.data.domain, 'human.interaction');
    const seen = domained.filter((e) => e.subject === event.subject);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.id, seen[1]!.id);
  });

  it('keeps the domained queue for deadLetterRetentionSeconds whether or not a listener registered it', async (t) => {
    const retention = async () =>
      (
        await suite.pool.query(
          `SELECT retention_seconds, deletion_seconds FROM pgboss.queue WHERE name = 'arvo.domained'`,
        )
      ).rows;
    await startPolicyBroker(t, async () => {});
    assert.deepEqual(await retention(), [{ retention_seconds: 604_800, deletion_seconds: 604_800 }]);
    await startPolicyBroker(t, (b) => b.onDomainedEvent(async () => {}));
    assert.deepEqual(await retention(), [{ retention_seconds: 604_800, deletion_seconds: 604_800 }]);
  });

  it('dispatch() sends an event with a domain to the domained queue, not to its `to`', async (t) => {
    const domained: ArvoEvent[] = [];
    const broker = await startPolicyBroker(t, async (b) => {
      await b.register(throwing('com.fail.contract', () => new ContractViolation('data does not match')));
      await b.onDomainedEvent(async (event) => void domained.push(event));
    });
    const event = clientEvent(
      'com.fail.contract',
      { ask: 'approve?' },
      { extensions: { domain: 'human.interaction' } },
    );
    await broker.dispatch(event);
    await waitFor('domained delivery', () => domained.some((e) => e.id === event.id));
    assert.equal((await jobsIn(suite.pool, 'arvo.domained')).filter((job) => job.id === event.id).length, 1);
    assert.equal(
      (await jobsIn(suite.pool, 'com.fail.contract')).filter((job) => job.id === event.id).length,
      0,
    );
  });

  it('rebuild failures are dead-lettered at once with the reason', async (t) => {
    await startPolicyBroker(t, (b) => b.register(handler('com.fail.rebuild', async () => [])));
    const boss = new PgBoss({ connectionString: suite.db.url });
    boss.on('error', () => {});
    await boss.start();
    try {
      const id = await boss.send('com.fail.rebuild', { not: 'an event' });
      const dead = await waitFor('dead letter of garbage', async () =>
        (await jobsIn(suite.pool, 'arvo.dead-letter')).find((job) => job.source_id === id),
      );
      assert.equal(dead.source_output.kind, 'invalidEvent');
      assert.match(dead.source_output.error.message, /cannot be rebuilt into an ArvoEvent/);
    } finally {
      await boss.stop({ graceful: false });
    }
  });

  it('getStats reports exact counts right after sends and failures', async (t) => {
    const { blocked, release } = gate(t);
    const statsHandler = handler('com.test.stats', async (event) => {
      if ((event.data as any).bad) throw new ContractViolation('bad stats input');
      if ((event.data as any).block) await blocked;
      return [replyTo(event, 'evt.stats.done')];
    });
    const broker = await startPolicyBroker(t, async (b) => {
      await b.register(statsHandler);
      await listenToClient(b);
    });
    const pool = suite.pool;
    const good = [1, 2, 3].map((n) => clientEvent('com.test.stats', { n }));
    const bad = [1, 2].map((n) => clientEvent('com.test.stats', { bad: true, n }));
    const slow = [1, 2].map((n) => clientEvent('com.test.stats', { block: true, n }));
    const before = (await broker.getStats()).find((s) => s.name === 'com.test.stats')!;
    for (const event of [...good, ...bad, ...slow]) await broker.dispatch(event);
    const stats = await waitFor('stats to settle', async () => {
      const all = await broker.getStats();
      const row = all.find((s) => s.name === 'com.test.stats')!;
      return row.active === 2 && row.completed === before.completed + 3 && row.failed === before.failed + 2
        ? all
        : undefined;
    });
    const row = stats.find((s) => s.name === 'com.test.stats')!;
    assert.deepEqual(
      { queued: row.queued, active: row.active, deferred: row.deferred, total: row.total },
      { queued: 0, active: 2, deferred: 0, total: before.total + 7 },
    );
    assert.equal(row.deadLettered, before.deadLettered + 2);
    assert.equal(row.oldestQueuedAgeMs, null);
    const dlq = stats.find((s) => s.name === 'arvo.dead-letter')!;
    const dlqRows = await jobsIn(pool, 'arvo.dead-letter');
    assert.equal(dlq.queued, dlqRows.filter((job) => job.state === 'created').length);
    assert.equal(dlq.total, dlqRows.length);
    // Dead letters wait (created) until someone redrives them: the oldest one's age is reported.
    const oldest = Math.min(
      ...dlqRows.filter((job) => job.state === 'created').map((job) => job.created_on.getTime()),
    );
    assert.ok(dlq.oldestQueuedAgeMs !== null);
    assert.ok(Math.abs(dlq.oldestQueuedAgeMs - (Date.now() - oldest)) < 2000, `${dlq.oldestQueuedAgeMs}`);
    assert.ok(stats.some((s) => s.name === 'arvo.unroutable'));
    // The same numbers for named queues, and for every queue in the database.
    assert.deepEqual(await broker.getStats({ queues: ['com.test.stats'] }), [row]);
    const all = await broker.getStats({ queues: 'all' });
    assert.deepEqual(
      all.find((s) => s.name === 'com.test.stats'),
      row,
    );
    const { rows: queueRows } = await pool.query('SELECT name FROM pgboss.queue ORDER BY name');
    assert.deepEqual(
      all.map((s) => s.name),
      queueRows.map((q) => q.name),
    );
    assert.ok(stats.some((s) => s.name === 'arvo.domained'));
    release();
    await waitFor('blocked jobs done', async () => {
      const after = (await broker.getStats()).find((s) => s.name === 'com.test.stats')!;
      return after.active === 0 && after.completed === before.completed + 5;
    });
  });

  it('retries an ExecutionViolation when configured with executionViolation: retry', async (t) => {
    const attempts = attemptTimes();
    const broker = await suite.startBroker(
      t,
      {
        executionViolation: 'retry',
        defaults: { worker: { retryLimit: 1, retryDelay: 0, retryBackoff: false } },
      },
      (b) =>
        b.register(
          throwing('com.fail.execretry', () => new ExecutionViolation('deliberate, but retried'), attempts),
        ),
    );
    const event = clientEvent('com.fail.execretry');
    await broker.dispatch(event);
    const dead = await deadLetterOf(event);
    assert.equal(attempts.of(event).length, 2);
    assert.equal(dead.source_retry_count, 1);
    assert.equal(dead.source_output.kind, 'execution');
  });

  it('creates a per-queue dead-letter queue and reports it in getStats', async (t) => {
    const broker = await startPolicyBroker(t, (b) =>
      b.register(
        throwing('com.fail.custom', () => new ContractViolation('custom dead letter')),
        {
          queue: { deadLetter: 'com.custom.dead-letter' },
        },
      ),
    );
    const event = clientEvent('com.fail.custom');
    await broker.dispatch(event);
    const dead = await waitFor('custom dead letter', async () =>
      (await jobsIn(suite.pool, 'com.custom.dead-letter')).find((job) => job.data.id === event.id),
    );
    assert.equal(dead.source_name, 'com.fail.custom');
    assert.equal(
      (await jobsIn(suite.pool, 'arvo.dead-letter')).filter((job) => job.data.id === event.id).length,
      0,
    );
    const stats = await broker.getStats();
    assert.equal(stats.find((s) => s.name === 'com.custom.dead-letter')?.queued, 1);
    assert.equal(stats.find((s) => s.name === 'com.fail.custom')?.deadLettered, 1);
  });

  it('lists pending dead letters with their source, attempts, failure and event', async (t) => {
    // Queues of this test alone, so the lists hold exactly its dead letters.
    const broker = await startPolicyBroker(t, async (b) => {
      await b.register(throwing('com.list.contract', () => new ContractViolation('data does not match')));
      await b.register(throwing('com.list.infra', () => new Error('database unreachable')));
      await b.register(
        throwing('com.list.custom', () => new ContractViolation('custom dead letter')),
        {
          queue: { deadLetter: 'com.list.dead-letter' },
        },
      );
    });
    const [contract, infra, custom] = ['com.list.contract', 'com.list.infra', 'com.list.custom'].map((to) =>
      clientEvent(to),
    );
    for (const event of [contract!, infra!, custom!]) await broker.dispatch(event);
    await Promise.all([deadLetterOf(contract!), deadLetterOf(infra!)]);
    await waitFor('custom dead letter', async () =>
      (await jobsIn(suite.pool, 'com.list.dead-letter')).some((job) => job.data.id === custom!.id),
    );
    const letters = await broker.listDeadLetters({ sourceQueue: 'com.list.contract' });
    assert.equal(letters.length, 1);
    const [letter] = letters;
    assert.equal(letter!.deadLetterQueue, 'arvo.dead-letter');
    assert.equal(letter!.sourceQueue, 'com.list.contract');
    assert.equal(letter!.attempts, 1);
    assert.equal((letter!.failure as any).kind, 'contract');
    assert.equal(letter!.event.to, 'com.list.contract');
    assert.equal(letter!.sourceJobId, letter!.event.id);
    const infraLetters = await broker.listDeadLetters({ sourceQueue: 'com.list.infra' });
    assert.equal(infraLetters[0]?.attempts, 3);
    const customLetters = await broker.listDeadLetters({ queue: 'com.list.dead-letter' });
    assert.deepEqual(
      customLetters.map((l) => l.sourceQueue),
      ['com.list.custom'],
    );
    await assert.rejects(
      broker.listDeadLetters({ limit: 0 }),
      (error: unknown) => error instanceof Error && /limit/.test(error.message),
    );
  });

  it('handles a job with outputs in one transaction: one batched insert per destination queue, one complete', async (t) => {
    const brokerPool = newPool(suite.db.url);
    const statements = recordStatements(brokerPool);
    const boss = new PgBoss({ connectionString: suite.db.url });
    boss.on('error', () => {});
    await boss.start();
    t.after(() => boss.stop({ graceful: false }));
    // Destinations nobody in this broker serves, so only the handled job's statements are counted.
    await boss.createQueue('com.count.a');
    await boss.createQueue('com.count.b');
    const fanOut = handler('com.count.fanout', async (event) => {
      statements.reset();
      const output = (to: string) =>
        clientEvent(to, {}, { source: 'com.count.fanout', subject: event.subject });
      return [output('com.count.a'), output('com.count.b'), output('com.count.a')];
    });
    // Without the event history; test/broker/history.test.ts shows its one insert in this transaction.
    const broker = await startTestBroker(t, { pool: brokerPool, history: false }, (b) => b.register(fanOut));
    t.after(() => brokerPool.end());
    // The second job shows the steady state: destinations already known, no lookup.
    let sent: string[] = [];
    for (const event of [clientEvent('com.count.fanout'), clientEvent('com.count.fanout')]) {
      await broker.dispatch(event);
      await waitFor('fan-out job completed', async () =>
        (await jobsIn(suite.pool, 'com.count.fanout')).some(
          (job) => job.data.id === event.id && job.state === 'completed',
        ),
      );
      sent = [...statements.texts];
    }
    const shape = statementShapes(sent);
    // The batch completes first: only the jobs still claimed have their outputs sent.
    assert.deepEqual(shape, ['BEGIN', 'complete', 'insert', 'insert', 'COMMIT'], sent.join('\n---\n'));
    assert.equal((await jobsIn(suite.pool, 'com.count.a')).length, 4);
    assert.equal((await jobsIn(suite.pool, 'com.count.b')).length, 2);
  });

  it('dead-letters at once in one round trip of its own on the broker pool', async (t) => {
    // The broker on a pool of the test's, whose clients count what they send while the handler's
    // failure is being settled (from the throw until the dead letter is visible).
    const brokerPool = newPool(suite.db.url);
    const statements = recordStatements(brokerPool);
    const counted = handler('com.fail.counted', async () => {
      statements.reset();
      throw new ContractViolation('counted');
    });
    // Without the event history (with it: one transaction, see test/broker/history.test.ts).
    const broker = await startTestBroker(t, { pool: brokerPool, history: false }, (b) => b.register(counted));
    t.after(() => brokerPool.end());
    const event = clientEvent('com.fail.counted');
    await broker.dispatch(event);
    const dead = await deadLetterOf(event);
    const sent = [...statements.texts];
    assert.equal(dead.source_name, 'com.fail.counted');
    assert.equal(dead.source_retry_count, 0);
    assert.equal(dead.source_output.kind, 'contract');
    assert.equal(sent.length, 1, sent.join('\n---\n'));
    assert.match(sent[0]!, /deleted_jobs/);
  });

  it('the dead-letter statement settles only the attempt that was fetched', async () => {
    const boss = new PgBoss({ connectionString: suite.db.url });
    boss.on('error', () => {});
    await boss.start();
    try {
      await boss.createQueue('com.fail.fenced', { deadLetter: 'arvo.dead-letter', retryLimit: 3 });
      const id = await boss.send('com.fail.fenced', { n: 1 });
      const [job] = await boss.fetch('com.fail.fenced', { includeMetadata: true });
      assert.equal(job?.id, id);
      const deadLetter = (retryCount: number) =>
        suite.pool.query(deadLetterAttemptsSql('pgboss'), [
          'com.fail.fenced',
          JSON.stringify([{ id, retry_count: retryCount, output: { kind: 'contract' } }]),
        ]);
      // Another attempt's retry count (a stale worker's) settles nothing.
      assert.equal(Number((await deadLetter(job!.retryCount + 1)).rows[0].count), 0);
      assert.equal((await jobsIn(suite.pool, 'com.fail.fenced'))[0].state, 'active');
      assert.equal(Number((await deadLetter(job!.retryCount)).rows[0].count), 1);
      const [original] = await jobsIn(suite.pool, 'com.fail.fenced');
      assert.equal(original.state, 'failed');
      assert.deepEqual(original.output, { kind: 'contract' });
      const dead = (await jobsIn(suite.pool, 'arvo.dead-letter')).filter((row) => row.source_id === id);
      assert.equal(dead.length, 1);
      assert.deepEqual(dead[0].source_output, { kind: 'contract' });
      // Settled once: the same attempt again finds nothing active.
      assert.equal(Number((await deadLetter(job!.retryCount)).rows[0].count), 0);
    } finally {
      await boss.stop({ graceful: false });
    }
  });
});
