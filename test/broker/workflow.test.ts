import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import pg from 'pg';
import { PostgresEventBroker, StateOutsideBrokerTransactionError } from '../../src/broker/index';
import { connectPostgresMachineMemory, type PostgresMachineMemory } from '../../src/memory/index';
import { createTestDatabase, type TestDatabase } from '../support/database';
import {
  completionType,
  createInitEvent,
  createOrchestratorFixture,
  createServiceFixture,
} from '../support/orchestrator';
import { jobsIn, memoryLogger, spawnWorker, waitFor } from './support';

describe('PostgresEventBroker with PostgresMachineMemory and the orchestrator fixture', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let memory: PostgresMachineMemory;
  let broker: PostgresEventBroker;
  let child: ChildProcess | undefined;
  const completions = new Map<string, ArvoEvent>();

  before(async () => {
    db = await createTestDatabase('broker_workflow');
    // One pool shared by the broker's transactions and the memory.
    pool = new pg.Pool({ connectionString: db.url, max: 20 });
    // One lock attempt: any contention surfaces as LOCK_UNACQUIRED at once.
    memory = await connectPostgresMachineMemory({ pool, lock: { maxAttempts: 1, ttlMs: 10_000 } });
    broker = new PostgresEventBroker({
      pool,
      logger: memoryLogger(),
      lockContention: { minDelayMs: 20, maxDelayMs: 100 },
    });
    for (const type of ['com.calc.add', 'com.calc.mul', 'com.calc.fan', 'com.atomic.sink']) {
      await broker.register(createServiceFixture(type, type === 'com.calc.fan' ? { delayMs: 50 } : {}));
    }
    const orchestrators = [
      { name: 'sequence', steps: [{ call: 'com.calc.add' }, { call: 'com.calc.mul' }] },
      { name: 'fanout', steps: [{ fanOut: 'com.calc.fan', count: 8 }, { call: 'com.calc.add' }] },
      { name: 'fangrouped', steps: [{ fanOut: 'com.calc.fan', count: 8 }, { call: 'com.calc.add' }] },
      { name: 'parent', steps: [{ call: 'com.calc.add' }, { child: 'child' }, { call: 'com.calc.mul' }] },
      { name: 'child', steps: [{ call: 'com.calc.mul' }] },
      { name: 'failing', steps: [{ call: 'com.calc.add', data: { fail: true } }, { call: 'com.calc.mul' }] },
      { name: 'atomic', steps: [{ call: 'com.atomic.sink' }] },
      { name: 'remote', steps: [{ call: 'com.calc.add' }, { call: 'com.remote.mul' }] },
    ];
    for (const { name, steps } of orchestrators) {
      // retryLimit 0: a lock contention that consumed a retry would dead-letter the event.
      // `fanout` turns the per-subject limit of orchestrator queues off, so its replies contend.
      await broker.register(createOrchestratorFixture({ name, memory, steps }), {
        worker: { retryLimit: 0, ...(name === 'fanout' ? { subjectConcurrency: 0 } : {}) },
      });
    }
    await broker.onWorkflowComplete({
      source: 'com.test.client',
      listener: (event) => void completions.set(event.subject, event),
    });
    await broker.start();
  });

  after(async () => {
    child?.kill('SIGTERM');
    await broker?.stop({ timeoutMs: 5000 });
    await memory?.close();
    await pool?.end();
    await db?.drop();
  });

  async function run(name: string, timeoutMs = 30_000): Promise<ArvoEvent> {
    const init = createInitEvent(name);
    await broker.dispatch(init);
    return waitFor(`completion of ${name}`, () => completions.get(init.subject), timeoutMs);
  }

  async function deadLetters(): Promise<any[]> {
    return jobsIn(pool, 'arvo.dead-letter');
  }

  it('refuses an orchestrator whose memory cannot join the job transaction, unless allowStateOutsideBrokerTransaction', async () => {
    const elsewhere = await createTestDatabase('broker_workflow_elsewhere');
    const foreign = await connectPostgresMachineMemory({ connectionString: elsewhere.url });
    const inProcess = {
      read: async () => null,
      write: async () => {},
      lock: async () => true,
      unlock: async () => true,
    };
    try {
      for (const [name, other, reason] of [
        ['foreigndb', foreign, /on another database than the broker's/],
        ['inprocess', inProcess, /not a PostgresMachineMemory/],
      ] as const) {
        const orchestrator = createOrchestratorFixture({
          name,
          memory: other,
          steps: [{ call: 'com.calc.add' }],
        });
        await assert.rejects(broker.register(orchestrator), (error: unknown) => {
          assert.ok(error instanceof StateOutsideBrokerTransactionError, String(error));
          assert.match(error.message, reason);
          assert.match(error.message, /allowStateOutsideBrokerTransaction/);
          return true;
        });
        assert.ok(!broker.queues.includes(`arvo.orc.${name}`), 'not registered');
      }
      // Accepted when asked for by name, and then it runs (its state commits on its own).
      await broker.register(
        createOrchestratorFixture({ name: 'foreigndb', memory: foreign, steps: [{ call: 'com.calc.add' }] }),
        { allowStateOutsideBrokerTransaction: true },
      );
      const done = await run('foreigndb');
      assert.equal(done.type, completionType('foreigndb'));
    } finally {
      await foreign.close();
      await elsewhere.drop();
    }
  });

  it('runs a sequential workflow to completion', async () => {
    const done = await run('sequence');
    assert.equal(done.type, completionType('sequence'));
    const data = done.data as any;
    assert.equal(data.status, 'done');
    assert.deepEqual(
      data.results.map((r: any) => r.data.service),
      ['com.calc.add', 'com.calc.mul'],
    );
    const record = (await memory.read(done.subject)) as any;
    assert.equal(record.status, 'done');
  });

  it('fans out: contending replies on one subject are rescheduled, none dead-lettered, no retry consumed', async () => {
    const inits = Array.from({ length: 4 }, () => createInitEvent('fanout'));
    for (const init of inits) await broker.dispatch(init);
    const dones = await Promise.all(
      inits.map((init) => waitFor('fan-out completion', () => completions.get(init.subject), 60_000)),
    );
    for (const done of dones) {
      const data = done.data as any;
      assert.equal(data.status, 'done');
      assert.equal(data.results.length, 9);
    }
    const jobs = await jobsIn(pool, 'arvo.orc.fanout');
    assert.ok(
      jobs.every((job) => job.state === 'completed'),
      'every orchestrator job completed',
    );
    assert.ok(
      jobs.every((job) => job.retry_count === 0),
      'no retry consumed',
    );
    const rescheduled = jobs.filter((job) => job.output?.reason === 'lock contention').length;
    // 4 inits + 4 × (8 replies + 1 reply), plus one copy per contention.
    assert.equal(jobs.length - rescheduled, 4 + 4 * 9);
    assert.deepEqual(
      (await deadLetters()).filter((job) => job.source_name === 'arvo.orc.fanout'),
      [],
    );
    console.log(`# fan-out: ${rescheduled} lock-contention reschedules for 32 contending replies`);
  });

  it('fans out with the default per-subject limit on orchestrator queues: replies wait instead of contending', async () => {
    const inits = Array.from({ length: 4 }, () => createInitEvent('fangrouped'));
    for (const init of inits) await broker.dispatch(init);
    for (const init of inits) {
      const done = await waitFor('grouped fan-out completion', () => completions.get(init.subject), 60_000);
      assert.equal((done.data as any).results.length, 9);
    }
    const jobs = await jobsIn(pool, 'arvo.orc.fangrouped');
    assert.ok(jobs.every((job) => job.state === 'completed' && job.retry_count === 0));
    const rescheduled = jobs.filter((job) => job.output?.reason === 'lock contention').length;
    assert.equal(jobs.length - rescheduled, 4 + 4 * 9);
    console.log(`# grouped fan-out: ${rescheduled} lock-contention reschedules for 32 replies`);
  });

  it('runs a parent/child workflow', async () => {
    const done = await run('parent');
    const data = done.data as any;
    assert.equal(data.status, 'done');
    assert.deepEqual(
      data.results.map((r: any) => r.type),
      ['evt.com.calc.add.success', completionType('child'), 'evt.com.calc.mul.success'],
    );
    const childResult = data.results[1].data;
    assert.equal(childResult.status, 'done');
  });

  it('routes a service system-error event back, and the workflow completes as failed', async () => {
    const done = await run('failing');
    const data = done.data as any;
    assert.equal(data.status, 'failure');
    assert.match(data.error, /failed on request/);
    const record = (await memory.read(done.subject)) as any;
    assert.equal(record.executionStatus, 'failure');
  });

  it('is atomic: when the output insert fails, the state write rolls back with it', async () => {
    // Make every insert of a job for com.atomic.sink fail inside the handler's transaction.
    await pool.query(`
      CREATE FUNCTION public.refuse_sink() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'sink refused'; END $$;
      CREATE TRIGGER refuse_sink BEFORE INSERT ON pgboss.job_common
        FOR EACH ROW WHEN (NEW.name = 'com.atomic.sink') EXECUTE FUNCTION public.refuse_sink();`);
    const init = createInitEvent('atomic');
    await broker.dispatch(init);
    await waitFor('first failed attempt', async () => {
      const [job] = (await jobsIn(pool, 'arvo.orc.atomic')).filter((j) => j.id === init.id);
      return job?.state === 'failed' || job?.state === 'retry' ? job : undefined;
    });
    assert.equal(await memory.read(init.subject), null, 'no state committed without its outputs');
    assert.equal((await jobsIn(pool, 'com.atomic.sink')).length, 0);
    const [failed] = (await jobsIn(pool, 'arvo.orc.atomic')).filter((j) => j.id === init.id);
    assert.match(JSON.stringify(failed.output), /sink refused/);
    // retryLimit 0 on this orchestrator: the event is dead-lettered, the state still absent.
    const dead = await waitFor('dead letter', async () =>
      (await deadLetters()).find((job) => job.source_id === init.id),
    );
    assert.equal(dead.source_output.kind, 'infrastructure');
    await pool.query('DROP TRIGGER refuse_sink ON pgboss.job_common; DROP FUNCTION public.refuse_sink()');
    assert.equal(await memory.read(init.subject), null);
    // The lock was released when the transaction rolled back: a redrive completes the workflow.
    const [listed] = await broker.listDeadLetters({ sourceQueue: 'arvo.orc.atomic' });
    assert.equal(listed?.id, dead.id);
    assert.equal(listed?.attempts, 1);
    assert.equal(listed?.event.id, init.id);
    assert.equal(await broker.redriveDeadLetters({ ids: [dead.id] }), 1);
    const done = await waitFor('completion after redrive', () => completions.get(init.subject), 30_000);
    assert.equal((done.data as any).status, 'done');
  });

  it('serves one workflow from two broker instances in two processes', async () => {
    const worker = spawnWorker('remote-worker.ts', db.url);
    child = worker.child;
    const output = worker.output;
    await waitFor('remote worker ready', () => output().includes('ready'), 30_000);
    const done = await run('remote');
    const data = done.data as any;
    assert.equal(data.status, 'done');
    assert.equal(data.results[1].type, 'evt.com.remote.mul.success');
    assert.equal(data.results[1].data.pid, child.pid);
    assert.notEqual(child.pid, process.pid);
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    child = undefined;
  });
});
