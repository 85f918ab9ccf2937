import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import { ConfigViolation, ContractViolation, ExecutionViolation } from 'arvo-event-handler';
import type pg from 'pg';
import { PgBoss } from 'pg-boss';
import { PostgresEventBroker } from '../../src/broker/index';
import { deadLetterAttemptsSql } from '../../src/broker/pgboss';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { TransactionViolation } from '../support/orchestrator';
import { recordStatements, statementShapes } from '../support/statements';
import { clientEvent, handler, jobsIn, memoryLogger, newPool, replyTo, waitFor } from './support';

const SECRET_URL = 'postgres://app:s3cr3t-pw-123@db.internal:5432/app';

describe('PostgresEventBroker: error policy, dead letters, stats', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let broker: PostgresEventBroker;
  const logger = memoryLogger();
  const attempts = new Map<string, number[]>();
  const domained: ArvoEvent[] = [];
  let releaseBlocked: () => void = () => {};
  let blocked = new Promise<void>((resolve) => {
    releaseBlocked = resolve;
  });

  function count(event: ArvoEvent): number {
    const list = attempts.get(event.id) ?? [];
    list.push(Date.now());
    attempts.set(event.id, list);
    return list.length;
  }

  before(async () => {
    db = await createTestDatabase('broker_failures');
    pool = newPool(db.url);
    broker = new PostgresEventBroker({
      connectionString: db.url,
      logger,
      defaults: { worker: { retryLimit: 2, retryDelay: 1, retryBackoff: true } },
      lockContention: { minDelayMs: 20, maxDelayMs: 60 },
    });
    const throwing = (source: string, make: () => Error) =>
      handler(source, async (event) => {
        count(event);
        throw make();
      });
    await broker.register(throwing('com.fail.contract', () => new ContractViolation('data does not match')));
    await broker.register(throwing('com.fail.config', () => new ConfigViolation('wrong destination')));
    await broker.register(throwing('com.fail.execution', () => new ExecutionViolation('deliberate')));
    await broker.register(throwing('com.fail.infra', () => new Error(`cannot reach ${SECRET_URL}`)));
    await broker.register(
      throwing('com.fail.custom', () => new ContractViolation('custom dead letter')),
      { queue: { deadLetter: 'com.custom.dead-letter' } },
    );
    await broker.register(
      handler('com.fail.transactiononce', async (event) => {
        if (count(event) === 1)
          throw new TransactionViolation('WRITE_MACHINE_MEMORY_FAILURE', 'version conflict');
        return [replyTo(event, 'evt.transaction.done')];
      }),
    );
    await broker.register(
      handler('com.fail.contended', async (event) => {
        if (count(event) <= 4) throw new TransactionViolation('LOCK_UNACQUIRED', 'locked by another holder');
        return [replyTo(event, 'evt.contended.done')];
      }),
      { worker: { retryLimit: 0 } },
    );
    // arvo 3 marks such events with `domain`; on arvo 2 it is an extension of that name.
    await broker.register(
      handler('com.test.domain', async (event) => [
        replyTo(event, 'evt.human.approval', { ask: 'ok?' }, undefined, { domain: 'human.interaction' }),
      ]),
    );
    await broker.register(
      handler('com.test.stats', async (event) => {
        count(event);
        if ((event.data as any).bad) throw new ContractViolation('bad stats input');
        if ((event.data as any).block) await blocked;
        return [replyTo(event, 'evt.stats.done')];
      }),
    );
    await broker.register(handler('com.fail.fetch', async () => []));
    // Never returns while the suite runs: each attempt overruns expireInSeconds.
    await broker.register(
      handler('com.fail.hang', async (event) => {
        count(event);
        await blocked;
        return [];
      }),
      { worker: { expireInSeconds: 2, retryLimit: 1 } },
    );
    await broker.onWorkflowComplete({ source: 'com.test.client', listener: () => {} });
    let domainedCalls = 0;
    await broker.onDomainedEvent(async (event) => {
      domainedCalls += 1;
      domained.push(event);
      if (domainedCalls === 1) throw new Error('listener crashed');
    });
    await broker.start();
  });

  after(async () => {
    releaseBlocked();
    await broker?.stop({ timeoutMs: 5000 });
    await pool?.end();
    await db?.drop();
  });

  async function deadLetterOf(event: ArvoEvent): Promise<any> {
    return waitFor(
      `dead letter of ${event.to}`,
      async () => (await jobsIn(pool, 'arvo.dead-letter')).find((job) => job.data.id === event.id),
      30_000,
    );
  }

  for (const [queue, kind, name] of [
    ['com.fail.contract', 'contract', 'ViolationError<Contract>'],
    ['com.fail.config', 'config', 'ViolationError<Config>'],
    ['com.fail.execution', 'execution', 'ViolationError<Execution>'],
  ] as const) {
    it(`dead-letters a ${kind} violation at once, without retries`, async () => {
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
      assert.equal(attempts.get(event.id)?.length, 1);
      const [original] = await jobsIn(pool, queue).then((jobs) => jobs.filter((job) => job.id === event.id));
      assert.equal(original.state, 'failed');
    });
  }

  it('retries other errors with backoff, then dead-letters them with a redacted error', async () => {
    const event = clientEvent('com.fail.infra');
    await broker.dispatch(event);
    const dead = await deadLetterOf(event);
    const times = attempts.get(event.id)!;
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

  it("logs pg-boss's worker errors with their real message, redacted", async () => {
    // Every fetch from com.fail.fetch fails inside pg-boss's worker, which emits a plain copy of the error.
    await pool.query(`
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
      await pool.query('DROP TRIGGER refuse_fetch ON pgboss.job; DROP FUNCTION public.refuse_fetch()');
    }
  });

  it('fails a handler that overruns expireInSeconds with the library record (kind timeout), then dead-letters it', async () => {
    const event = clientEvent('com.fail.hang');
    await broker.dispatch(event);
    const dead = await deadLetterOf(event);
    assert.equal(attempts.get(event.id)?.length, 2, 'retried once, like any failure');
    assert.equal(dead.source_output.kind, 'timeout');
    assert.equal(dead.source_output.attempt, 2);
    assert.equal(dead.source_output.error.name, 'HandlerTimeoutError');
    assert.equal(dead.source_output.history[0].kind, 'timeout');
    const [letter] = await broker.deadLetters.list({ sourceQueue: 'com.fail.hang' });
    assert.match(letter!.error!.message, /did not finish event .* within expireInSeconds \(2 s\)/);
  });

  it('retries a transaction violation (memory conflict) and consumes a retry', async () => {
    const event = clientEvent('com.fail.transactiononce');
    await broker.dispatch(event);
    const job = await waitFor('completion', async () =>
      (await jobsIn(pool, 'com.fail.transactiononce')).find(
        (j) => j.id === event.id && j.state === 'completed',
      ),
    );
    assert.equal(job.retry_count, 1);
    assert.equal(attempts.get(event.id)?.length, 2);
  });

  it('reschedules on lock contention without consuming the retry budget (retryLimit 0)', async () => {
    const event = clientEvent('com.fail.contended');
    await broker.dispatch(event);
    await waitFor('reply after contention', async () =>
      (await jobsIn(pool, 'com.test.client')).find((job) => job.data.subject === event.subject),
    );
    assert.equal(attempts.get(event.id)?.length, 5);
    const jobs = await jobsIn(pool, 'com.fail.contended');
    assert.equal(jobs.length, 5, 'the original and four rescheduled copies');
    assert.ok(jobs.every((job) => job.state === 'completed'));
    assert.ok(jobs.every((job) => job.retry_count === 0));
    assert.equal(jobs.filter((job) => job.output?.reason === 'lock contention').length, 4);
    assert.equal(
      (await jobsIn(pool, 'arvo.dead-letter')).filter((job) => job.data.id === event.id).length,
      0,
    );
  });

  it('keeps domained events durably and retries the listener when it throws', async () => {
    const event = clientEvent('com.test.domain');
    await broker.dispatch(event);
    const job = await waitFor('domained job completed', async () =>
      (await jobsIn(pool, 'arvo.domained')).find(
        (j) => j.data.subject === event.subject && j.state === 'completed',
      ),
    );
    assert.equal(job.retry_count, 1);
    assert.equal(job.data.domain, 'human.interaction');
    const seen = domained.filter((e) => e.subject === event.subject);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.id, seen[1]!.id);
  });

  it('keeps the domained queue for deadLetterRetentionSeconds whether or not a listener registered it', async () => {
    const { rows } = await pool.query(
      `SELECT retention_seconds, deletion_seconds FROM pgboss.queue WHERE name = 'arvo.domained'`,
    );
    assert.deepEqual(rows, [{ retention_seconds: 604_800, deletion_seconds: 604_800 }]);
  });

  it('dispatch() sends an event with a domain to the domained queue, not to its `to`', async () => {
    const event = clientEvent(
      'com.fail.contract',
      { ask: 'approve?' },
      { extensions: { domain: 'human.interaction' } },
    );
    await broker.dispatch(event);
    await waitFor('domained delivery', () => domained.some((e) => e.id === event.id));
    assert.equal((await jobsIn(pool, 'arvo.domained')).filter((job) => job.id === event.id).length, 1);
    assert.equal((await jobsIn(pool, 'com.fail.contract')).filter((job) => job.id === event.id).length, 0);
  });

  it('rebuild failures are dead-lettered at once with the reason', async () => {
    const boss = new PgBoss({ connectionString: db.url });
    boss.on('error', () => {});
    await boss.start();
    try {
      const id = await boss.send('com.test.stats', { not: 'an event' });
      const dead = await waitFor('dead letter of garbage', async () =>
        (await jobsIn(pool, 'arvo.dead-letter')).find((job) => job.source_id === id),
      );
      assert.equal(dead.source_output.kind, 'invalidEvent');
      assert.match(dead.source_output.error.message, /cannot be rebuilt into an ArvoEvent/);
    } finally {
      await boss.stop({ graceful: false });
    }
  });

  it('getStats reports exact counts right after sends and failures', async () => {
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
    releaseBlocked();
    blocked = Promise.resolve();
    await waitFor('blocked jobs done', async () => {
      const after = (await broker.getStats()).find((s) => s.name === 'com.test.stats')!;
      return after.active === 0 && after.completed === before.completed + 5;
    });
  });

  it('retries an ExecutionViolation when configured with executionViolation: retry', async () => {
    const other = new PostgresEventBroker({
      connectionString: db.url,
      logger: memoryLogger(),
      executionViolation: 'retry',
      defaults: { worker: { retryLimit: 1, retryDelay: 0, retryBackoff: false } },
    });
    await other.register(
      handler('com.fail.execretry', async (event) => {
        count(event);
        throw new ExecutionViolation('deliberate, but retried');
      }),
    );
    await other.start();
    try {
      const event = clientEvent('com.fail.execretry');
      await other.dispatch(event);
      const dead = await deadLetterOf(event);
      assert.equal(attempts.get(event.id)?.length, 2);
      assert.equal(dead.source_retry_count, 1);
      assert.equal(dead.source_output.kind, 'execution');
    } finally {
      await other.stop({ timeoutMs: 2000 });
    }
  });

  it('creates a per-queue dead-letter queue and reports it in getStats', async () => {
    const event = clientEvent('com.fail.custom');
    await broker.dispatch(event);
    const dead = await waitFor('custom dead letter', async () =>
      (await jobsIn(pool, 'com.custom.dead-letter')).find((job) => job.data.id === event.id),
    );
    assert.equal(dead.source_name, 'com.fail.custom');
    assert.equal(
      (await jobsIn(pool, 'arvo.dead-letter')).filter((job) => job.data.id === event.id).length,
      0,
    );
    const stats = await broker.getStats();
    assert.equal(stats.find((s) => s.name === 'com.custom.dead-letter')?.queued, 1);
    assert.equal(stats.find((s) => s.name === 'com.fail.custom')?.deadLettered, 1);
  });

  it('lists pending dead letters with their source, attempts, failure and event', async () => {
    const letters = await broker.listDeadLetters({ sourceQueue: 'com.fail.contract' });
    assert.equal(letters.length, 1);
    const [letter] = letters;
    assert.equal(letter!.deadLetterQueue, 'arvo.dead-letter');
    assert.equal(letter!.sourceQueue, 'com.fail.contract');
    assert.equal(letter!.attempts, 1);
    assert.equal((letter!.failure as any).kind, 'contract');
    assert.equal(letter!.event.to, 'com.fail.contract');
    assert.equal(letter!.sourceJobId, letter!.event.id);
    const infra = await broker.listDeadLetters({ sourceQueue: 'com.fail.infra' });
    assert.equal(infra[0]?.attempts, 3);
    const custom = await broker.listDeadLetters({ queue: 'com.custom.dead-letter' });
    assert.deepEqual(
      custom.map((l) => l.sourceQueue),
      ['com.fail.custom'],
    );
    await assert.rejects(
      broker.listDeadLetters({ limit: 0 }),
      (error: unknown) => error instanceof Error && /limit/.test(error.message),
    );
  });

  it('handles a job with outputs in one transaction: one batched insert per destination queue, one complete', async () => {
    const brokerPool = newPool(db.url);
    const statements = recordStatements(brokerPool);
    const boss = new PgBoss({ connectionString: db.url });
    boss.on('error', () => {});
    await boss.start();
    // Destinations nobody in this broker serves, so only the handled job's statements are counted.
    await boss.createQueue('com.count.a');
    await boss.createQueue('com.count.b');
    // Without the event history; test/broker/history.test.ts shows its one insert in this transaction.
    const other = new PostgresEventBroker({ pool: brokerPool, logger: memoryLogger(), history: false });
    await other.register(
      handler('com.count.fanout', async (event) => {
        statements.reset();
        const output = (to: string) =>
          clientEvent(to, {}, { source: 'com.count.fanout', subject: event.subject });
        return [output('com.count.a'), output('com.count.b'), output('com.count.a')];
      }),
    );
    await other.start();
    try {
      // The second job shows the steady state: destinations already known, no lookup.
      let sent: string[] = [];
      for (const event of [clientEvent('com.count.fanout'), clientEvent('com.count.fanout')]) {
        await other.dispatch(event);
        await waitFor('fan-out job completed', async () =>
          (await jobsIn(pool, 'com.count.fanout')).some(
            (job) => job.data.id === event.id && job.state === 'completed',
          ),
        );
        sent = [...statements.texts];
      }
      const shape = statementShapes(sent);
      assert.deepEqual(shape, ['BEGIN', 'insert', 'insert', 'complete', 'COMMIT'], sent.join('\n---\n'));
      assert.equal((await jobsIn(pool, 'com.count.a')).length, 4);
      assert.equal((await jobsIn(pool, 'com.count.b')).length, 2);
    } finally {
      await other.stop({ timeoutMs: 2000 });
      await boss.stop({ graceful: false });
      await brokerPool.end();
    }
  });

  it('dead-letters at once in one round trip of its own on the broker pool', async () => {
    // The broker on a pool of the test's, whose clients count what they send while the handler's
    // failure is being settled (from the throw until the dead letter is visible).
    const brokerPool = newPool(db.url);
    const statements = recordStatements(brokerPool);
    // Without the event history (with it: one transaction, see test/broker/history.test.ts).
    const other = new PostgresEventBroker({ pool: brokerPool, logger: memoryLogger(), history: false });
    await other.register(
      handler('com.fail.counted', async () => {
        statements.reset();
        throw new ContractViolation('counted');
      }),
    );
    await other.start();
    try {
      const event = clientEvent('com.fail.counted');
      await other.dispatch(event);
      const dead = await deadLetterOf(event);
      const sent = [...statements.texts];
      assert.equal(dead.source_name, 'com.fail.counted');
      assert.equal(dead.source_retry_count, 0);
      assert.equal(dead.source_output.kind, 'contract');
      assert.equal(sent.length, 1, sent.join('\n---\n'));
      assert.match(sent[0]!, /deleted_jobs/);
    } finally {
      await other.stop({ timeoutMs: 2000 });
      await brokerPool.end();
    }
  });

  it('the dead-letter statement settles only the attempt that was fetched', async () => {
    const boss = new PgBoss({ connectionString: db.url });
    boss.on('error', () => {});
    await boss.start();
    try {
      await boss.createQueue('com.fail.fenced', { deadLetter: 'arvo.dead-letter', retryLimit: 3 });
      const id = await boss.send('com.fail.fenced', { n: 1 });
      const [job] = await boss.fetch('com.fail.fenced', { includeMetadata: true });
      assert.equal(job?.id, id);
      const deadLetter = (retryCount: number) =>
        pool.query(deadLetterAttemptsSql('pgboss'), [
          'com.fail.fenced',
          JSON.stringify([{ id, retry_count: retryCount, output: { kind: 'contract' } }]),
        ]);
      // Another attempt's retry count (a stale worker's) settles nothing.
      assert.equal(Number((await deadLetter(job!.retryCount + 1)).rows[0].count), 0);
      assert.equal((await jobsIn(pool, 'com.fail.fenced'))[0].state, 'active');
      assert.equal(Number((await deadLetter(job!.retryCount)).rows[0].count), 1);
      const [original] = await jobsIn(pool, 'com.fail.fenced');
      assert.equal(original.state, 'failed');
      assert.deepEqual(original.output, { kind: 'contract' });
      const dead = (await jobsIn(pool, 'arvo.dead-letter')).filter((row) => row.source_id === id);
      assert.equal(dead.length, 1);
      assert.deepEqual(dead[0].source_output, { kind: 'contract' });
      // Settled once: the same attempt again finds nothing active.
      assert.equal(Number((await deadLetter(job!.retryCount)).rows[0].count), 0);
    } finally {
      await boss.stop({ graceful: false });
    }
  });
});
