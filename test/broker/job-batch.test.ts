import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import pg from 'pg';
import format from 'pg-format';
import { connectPostgresMachineMemory, type PostgresMachineMemory } from '../../src/memory/index';
import { recordStatements } from '../support/statements';
import { clientEvent, handler, jobsIn, replyTo, startTestBroker, useTestDatabase, waitFor } from './support';

/**
 * One commit per fetched batch (src/broker/job-batch.ts): the jobs of a batch share one transaction,
 * each job's work stays atomic and isolated from its neighbours, and jobs of one subject run one
 * after the other although the transaction's advisory locks are re-entrant.
 */
describe('PostgresEventBroker: one transaction per fetched batch', () => {
  const suite = useTestDatabase('broker_job_batch');

  /** The broker's pool (its statements recorded) and a memory on it, closed when the test ends. */
  function brokerPool(t: TestContext): { pool: pg.Pool; memory: Promise<PostgresMachineMemory> } {
    const pool = new pg.Pool({ connectionString: suite.db.url, max: 10 });
    const memory = connectPostgresMachineMemory({ pool, lock: { maxAttempts: 1 } });
    t.after(async () => {
      await (await memory).close();
      await pool.end();
    });
    return { pool, memory };
  }

  /** Makes every insert of a job for `queue` fail with `message`, inside whatever transaction runs it, until the test ends. */
  async function refuseInsertsInto(t: TestContext, queue: string, message: string): Promise<void> {
    const name = `refuse_${queue.replace(/\W/g, '_')}`;
    await suite.pool.query(
      format(
        `CREATE FUNCTION public.%I() RETURNS trigger LANGUAGE plpgsql AS %L;
         CREATE TRIGGER %I BEFORE INSERT ON pgboss.job_common
           FOR EACH ROW WHEN (NEW.name = %L) EXECUTE FUNCTION public.%I();`,
        name,
        format('BEGIN RAISE EXCEPTION %L; END', message),
        name,
        queue,
        name,
      ),
    );
    t.after(() =>
      suite.pool.query(format('DROP TRIGGER %I ON pgboss.job_common; DROP FUNCTION public.%I()', name, name)),
    );
  }

  /** A counter record `{ count, seen }` kept by the memory protocol: lock → read → write → unlock. */
  async function countIn(memory: PostgresMachineMemory, subject: string, eventId: string): Promise<void> {
    assert.ok(await memory.lock(subject), `lock on ${subject}`);
    try {
      const previous = (await memory.read(subject)) as { count: number; seen: string[] } | null;
      // Holds the lock across a turn of the event loop, as a real orchestrator's compute does.
      await new Promise((resolve) => setTimeout(resolve, 5));
      const next = { count: (previous?.count ?? 0) + 1, seen: [...(previous?.seen ?? []), eventId] };
      await memory.write(subject, next, previous);
    } finally {
      await memory.unlock(subject);
    }
  }

  it('keeps every other event of a batch when one job in it throws: each delivered exactly once, one commit per batch', async (t) => {
    const { pool, memory: connecting } = brokerPool(t);
    const memory = await connecting;
    const statements = recordStatements(pool);
    const replies: ArvoEvent[] = [];
    const counter = handler('com.batch.count', async (event) => {
      await countIn(memory, event.subject, event.id);
      if ((event.data as { fail?: boolean }).fail) throw new Error('this job fails after writing its state');
      return [replyTo(event, 'evt.batch.counted', { id: event.id })];
    });
    const broker = await startTestBroker(t, { pool, history: false }, async (b) => {
      // retryLimit 0: the failing job is dead-lettered at once, so its state must never show.
      await b.register(counter, { worker: { batchSize: 10, localConcurrency: 1, retryLimit: 0 } });
      await b.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void replies.push(event),
      });
    });
    // Three batches of ten (inserted at once, so each fetch takes ten): one job in each throws.
    const events = Array.from({ length: 30 }, (_, index) =>
      clientEvent('com.batch.count', { fail: index % 10 === 3 }),
    );
    statements.reset();
    await broker.dispatchMany(events);
    const failing = events.filter((event) => (event.data as { fail: boolean }).fail);
    const passing = events.filter((event) => !(event.data as { fail: boolean }).fail);
    await waitFor('27 replies and 3 dead letters', async () => {
      const dead = (await jobsIn(pool, 'arvo.dead-letter')).filter(
        (job) => job.source_name === 'com.batch.count',
      );
      return replies.length >= passing.length && dead.length === failing.length;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Every other event: its state written once, its reply sent once.
    assert.deepEqual(
      replies.map((reply) => (reply.data as { id: string }).id).sort(),
      passing.map((e) => e.id).sort(),
    );
    for (const event of passing) {
      assert.deepEqual(await memory.read(event.subject), { count: 1, seen: [event.id] });
    }
    // The failing jobs: no state, dead-lettered with their error.
    for (const event of failing) assert.equal(await memory.read(event.subject), null);
    const jobs = await jobsIn(pool, 'com.batch.count');
    assert.equal(jobs.filter((job) => job.state === 'completed').length, passing.length);
    assert.ok(jobs.every((job) => job.retry_count === 0));
    // One commit per batch on the broker's pool (the failed jobs' settles commit on their own).
    const commits = statements.texts.filter((text) => text.trim() === 'COMMIT').length;
    assert.ok(commits <= 3 + failing.length, `${commits} commits for ${events.length} jobs in 3 batches`);
  });

  it('runs jobs of one subject fetched together one after the other, each seeing the state the previous wrote', async (t) => {
    const { pool, memory: connecting } = brokerPool(t);
    const memory = await connecting;
    let running = 0;
    let overlapped = 0;
    const counter = handler('com.batch.same', async (event) => {
      running++;
      if (running > 1) overlapped++;
      try {
        await countIn(memory, event.subject, event.id);
      } finally {
        running--;
      }
      return [];
    });
    const broker = await startTestBroker(t, { pool, history: false }, (b) =>
      // No per-subject limit: the ten replies of one subject are fetched in one batch, as fan-out replies are.
      b.register(counter, {
        worker: { batchSize: 10, localConcurrency: 1, retryLimit: 0, subjectConcurrency: 0 },
      }),
    );
    const subject = `fan-in-${Date.now()}`;
    const events = Array.from({ length: 10 }, () => clientEvent('com.batch.same', {}, { subject }));
    await broker.dispatchMany(events);
    const record = await waitFor('ten counts', async () => {
      const current = (await memory.read(subject)) as { count: number; seen: string[] } | null;
      return current?.count === 10 ? current : undefined;
    });
    assert.deepEqual([...record.seen].sort(), events.map((event) => event.id).sort());
    const jobs = await jobsIn(pool, 'com.batch.same');
    assert.equal(jobs.length, 10, 'no lock-contention copies: the batch ran them in turn');
    assert.ok(jobs.every((job) => job.state === 'completed' && job.retry_count === 0));
    assert.ok(overlapped > 0, 'the handlers did run concurrently: only their database work was serialised');
  });

  it('commits the jobs that are done without waiting for a slow neighbour in their batch', async (t) => {
    const { pool } = brokerPool(t);
    const replies = new Map<string, number>();
    let releaseSlow!: () => void;
    const slow = new Promise<void>((resolve) => {
      releaseSlow = resolve;
    });
    t.after(() => releaseSlow());
    const service = handler('com.batch.mixed', async (event) => {
      if ((event.data as { slow?: boolean }).slow) await slow;
      return [replyTo(event, 'evt.batch.mixed.done')];
    });
    const broker = await startTestBroker(t, { pool }, async (b) => {
      await b.register(service, { worker: { batchSize: 10, localConcurrency: 1 } });
      await b.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void replies.set(event.subject, Date.now()),
      });
    });
    const fast = Array.from({ length: 4 }, () => clientEvent('com.batch.mixed'));
    const slowEvent = clientEvent('com.batch.mixed', { slow: true });
    await broker.dispatchMany([slowEvent, ...fast]);
    // The fast jobs' replies arrive while the slow job of the same batch still runs.
    await waitFor("the fast jobs' replies", () => fast.every((event) => replies.has(event.subject)), 15_000);
    assert.equal(replies.has(slowEvent.subject), false);
    const jobs = await jobsIn(pool, 'com.batch.mixed');
    assert.equal(
      jobs.find((job) => job.id === slowEvent.id)?.state,
      'active',
      'fetched in the same batch, still running',
    );
    releaseSlow();
    await waitFor("the slow job's reply", () => replies.has(slowEvent.subject), 15_000);
  });

  it('redoes a batch one job at a time when a write fails for one of them: only that job fails', async (t) => {
    const { pool } = brokerPool(t);
    const replies: string[] = [];
    await refuseInsertsInto(t, 'com.batch.refused', 'sink refused');
    const service = handler('com.batch.forward', async (event) => {
      const to = (event.data as { refused?: boolean }).refused ? 'com.batch.refused' : undefined;
      return [replyTo(event, 'evt.batch.forwarded', { id: event.id }, to)];
    });
    const broker = await startTestBroker(t, { pool }, async (b) => {
      await b.register(service, { worker: { batchSize: 10, localConcurrency: 1, retryLimit: 0 } });
      await b.register(handler('com.batch.refused', async () => []));
      await b.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void replies.push((event.data as { id: string }).id),
      });
    });
    const events = Array.from({ length: 8 }, (_, index) =>
      clientEvent('com.batch.forward', { refused: index === 5 }),
    );
    await broker.dispatchMany(events);
    const refused = events[5]!;
    const dead = await waitFor('the refused job dead-lettered', async () =>
      (await jobsIn(pool, 'arvo.dead-letter')).find((job) => job.source_id === refused.id),
    );
    assert.match(JSON.stringify(dead.source_output), /sink refused/);
    await waitFor('the other seven replies', () => replies.length >= 7);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(
      replies.sort(),
      events
        .filter((event) => event !== refused)
        .map((event) => event.id)
        .sort(),
    );
    const jobs = await jobsIn(pool, 'com.batch.forward');
    assert.equal(jobs.filter((job) => job.state === 'completed').length, 7);
  });

  it('rolls the batch back when a job that wrote state lost its claim, and hands its neighbours back: each applied once', async (t) => {
    const { pool, memory: connecting } = brokerPool(t);
    const memory = await connecting;
    const runs = new Map<string, number>();
    const replies: string[] = [];
    const counter = handler('com.batch.claim', async (event) => {
      runs.set(event.id, (runs.get(event.id) ?? 0) + 1);
      await countIn(memory, event.subject, event.id);
      if ((event.data as { loseClaim?: boolean }).loseClaim && runs.get(event.id) === 1) {
        // As pg-boss's expiry would: the attempt is no longer this worker's before the batch commits.
        await suite.pool.query(
          `UPDATE pgboss.job SET state = 'retry', retry_count = retry_count + 1 WHERE id = $1`,
          [event.id],
        );
      }
      return [replyTo(event, 'evt.batch.claimed', { id: event.id })];
    });
    const broker = await startTestBroker(t, { pool, history: false }, async (b) => {
      await b.register(counter, { worker: { batchSize: 10, localConcurrency: 1, retryLimit: 3 } });
      await b.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void replies.push((event.data as { id: string }).id),
      });
    });
    const losing = clientEvent('com.batch.claim', { loseClaim: true });
    const neighbours = Array.from({ length: 3 }, () => clientEvent('com.batch.claim'));
    await broker.dispatchMany([losing, ...neighbours]);
    await waitFor('four replies', () => replies.length >= 4, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(replies.sort(), [losing, ...neighbours].map((event) => event.id).sort());
    for (const event of [losing, ...neighbours]) {
      // Each state applied once: the first run's writes were rolled back with the batch.
      assert.deepEqual(await memory.read(event.subject), { count: 1, seen: [event.id] });
      assert.equal(runs.get(event.id), 2, 'run again after the rollback');
    }
    const jobs = await jobsIn(pool, 'com.batch.claim');
    const handedBack = jobs.filter((job) => job.output?.reason === 'batch rolled back');
    assert.deepEqual(handedBack.map((job) => job.id).sort(), neighbours.map((event) => event.id).sort());
    const dead = await jobsIn(pool, 'arvo.dead-letter');
    assert.deepEqual(
      dead.filter((job) => job.source_name === 'com.batch.claim'),
      [],
    );
  });

  it('fails only the job whose outputs cannot be written after it wrote state; its neighbours are handed back and applied once', async (t) => {
    const { pool, memory: connecting } = brokerPool(t);
    const memory = await connecting;
    await refuseInsertsInto(t, 'com.batch.statesink', 'state sink refused');
    const runs = new Map<string, number>();
    const replies: string[] = [];
    const counter = handler('com.batch.stateout', async (event) => {
      runs.set(event.id, (runs.get(event.id) ?? 0) + 1);
      await countIn(memory, event.subject, event.id);
      const to = (event.data as { refused?: boolean }).refused ? 'com.batch.statesink' : undefined;
      return [replyTo(event, 'evt.batch.stateout', { id: event.id }, to)];
    });
    const broker = await startTestBroker(t, { pool, history: false }, async (b) => {
      await b.register(counter, { worker: { batchSize: 10, localConcurrency: 1, retryLimit: 0 } });
      await b.register(handler('com.batch.statesink', async () => []));
      await b.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void replies.push((event.data as { id: string }).id),
      });
    });
    const refused = clientEvent('com.batch.stateout', { refused: true });
    const neighbours = Array.from({ length: 3 }, () => clientEvent('com.batch.stateout'));
    await broker.dispatchMany([...neighbours, refused]);
    const dead = await waitFor('the refused job dead-lettered', async () =>
      (await jobsIn(pool, 'arvo.dead-letter')).find((job) => job.source_id === refused.id),
    );
    assert.match(JSON.stringify(dead.source_output), /state sink refused/);
    await waitFor("the neighbours' replies", () => replies.length >= neighbours.length, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(replies.sort(), neighbours.map((event) => event.id).sort());
    assert.equal(await memory.read(refused.subject), null, 'its state rolled back with its outputs');
    for (const event of neighbours) {
      assert.deepEqual(await memory.read(event.subject), { count: 1, seen: [event.id] });
      assert.equal(runs.get(event.id), 2, 'handed back and run again');
    }
    const jobs = await jobsIn(pool, 'com.batch.stateout');
    const handedBack = jobs.filter((job) => job.output?.reason === 'batch rolled back');
    assert.deepEqual(handedBack.map((job) => job.id).sort(), neighbours.map((event) => event.id).sort());
    assert.ok(
      jobs.every((job) => job.retry_count === 0),
      'no retry spent',
    );
  });
});
