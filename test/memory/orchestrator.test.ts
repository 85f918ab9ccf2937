/**
 * The orchestrator fixture (test/support/orchestrator.ts) running parent + child workflows directly
 * against PostgresMachineMemory, without a broker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { trace } from '@opentelemetry/api';
import { type ArvoEvent, createArvoEvent } from 'arvo-core';
import {
  connectPostgresMachineMemory,
  type IMachineMemory,
  releasePostgresMachineMemory,
} from '../../src/memory/index';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { deliverAll } from '../support/fixture-driver';
import { memoryForTest } from '../support/memory';
import {
  createInitEvent,
  createOrchestratorFixture,
  createServiceFixture,
  type FixtureHandler,
  type FixtureRecord,
  TransactionViolation,
} from '../support/orchestrator';
import { recordSpans } from '../support/telemetry';

const exporter = recordSpans();

let db: TestDatabase;

function handlersFor(store: IMachineMemory<Record<string, any>>, childFails = false): FixtureHandler[] {
  return [
    createOrchestratorFixture({
      name: 'parent',
      memory: store,
      steps: [
        { call: 'com.calc.add', data: { a: 1, b: 2 } },
        { fanOut: 'com.calc.mul', count: 3 },
        { child: 'child' },
      ],
    }),
    createOrchestratorFixture({
      name: 'child',
      memory: store,
      steps: [{ call: 'com.calc.add', data: { fail: childFails } }],
    }),
    createServiceFixture('com.calc.add'),
    createServiceFixture('com.calc.mul', { delayMs: 2 }),
  ];
}

before(async () => {
  db = await createTestDatabase('memory_orchestrator');
});
after(() => db.drop());

/**
 * The memories of one test, closed when it ends: `memory`, which the orchestrators use (with spans),
 * and `other`, a second process's memory that tries a lock once.
 */
async function memories(t: TestContext) {
  return {
    memory: await memoryForTest<FixtureRecord & Record<string, any>>(t, {
      connectionString: db.url,
      enableOtel: true,
    }),
    other: await memoryForTest(t, { connectionString: db.url, lock: { maxAttempts: 1 } }),
  };
}

describe('orchestrator fixture on PostgresMachineMemory', () => {
  it('runs a parent with a fan-out and a child workflow to completion', async (t) => {
    const { memory } = await memories(t);
    const init = createInitEvent('parent');
    const run = await deliverAll(handlersFor(memory), [init], { concurrent: true });

    assert.equal(run.outbox.length, 1);
    const done = run.outbox[0]!;
    assert.equal(done.type, 'arvo.orc.parent.done');
    assert.equal(done.to, 'com.test.client');
    assert.equal(done.subject, init.subject);
    const results = (done.data as { status: string; results: Array<{ type: string }> }).results;
    assert.equal((done.data as { status: string }).status, 'done');
    assert.deepEqual(
      results.map((r) => r.type),
      [
        'evt.com.calc.add.success',
        'evt.com.calc.mul.success',
        'evt.com.calc.mul.success',
        'evt.com.calc.mul.success',
        'arvo.orc.child.done',
      ],
    );

    const parent = await memory.read(init.subject);
    assert.equal(parent?.status, 'done');
    assert.equal(parent?.parentSubject, null);
    // Both finished workflows are kept: the fixture calls the completion hook as arvo 3 does, and
    // this memory's policy is the default (keep).
    const subjects = await memory.getSubjectsByRoot(init.subject);
    assert.equal(subjects.length, 1, 'the child, without the root');
    const childSubject = subjects[0]!;
    const child = await memory.read(childSubject);
    assert.equal(child?.status, 'done');
    assert.equal(child?.parentSubject, init.subject);
    assert.equal(await memory.getRootSubject(childSubject), init.subject);
    // 1 init + 1 add + 3 mul + the child's completion were applied to the parent.
    assert.equal(parent?.consumed.length, 6);
    const { rows } = await memory.pool.query('SELECT count(*)::int AS n FROM public.arvo_workflow_lock');
    assert.equal(rows[0].n, 0, 'every lock was released');
  });

  it('ignores a redelivered event without advancing the workflow', async (t) => {
    const { memory } = await memories(t);
    const init = createInitEvent('parent');
    const [parent] = handlersFor(memory);
    const first = await parent!.execute(init);
    assert.equal(first.length, 1);
    const before = await memory.read(init.subject);
    assert.deepEqual(await parent!.execute(init), []);
    const reply = (await handlersFor(memory)[2]!.execute(first[0]!)) as ArvoEvent[];
    const second = await parent!.execute(reply[0]!);
    assert.equal(second.length, 3, 'the reply advanced to the fan-out');
    const afterReply = await memory.read(init.subject);
    assert.deepEqual(await parent!.execute(reply[0]!), [], 'the same reply again emits nothing');
    assert.deepEqual(await memory.read(init.subject), afterReply);
    assert.notDeepEqual(afterReply, before);
  });

  it('fails the child and then the parent when a service throws', async (t) => {
    const { memory } = await memories(t);
    const init = createInitEvent('parent', { initiator: 'com.test.failing' });
    const run = await deliverAll(handlersFor(memory, true), [init]);
    assert.ok(run.delivered.some((event) => event.type === 'sys.com.calc.add.error'));
    assert.equal(run.outbox.length, 1);
    const done = run.outbox[0]!;
    assert.equal(done.to, 'com.test.failing');
    assert.equal((done.data as { status: string }).status, 'failure');
    assert.match(String((done.data as { error: string }).error), /com\.calc\.add failed on request/);
    const parent = await memory.read(init.subject);
    assert.equal(parent?.executionStatus, 'failure');
    const { rows } = await memory.pool.query(
      'SELECT count(*)::int AS n FROM public.arvo_workflow_state WHERE root_subject = $1 AND execution_status = $2',
      [init.subject, 'failure'],
    );
    assert.equal(rows[0].n, 2, 'parent and child are stored as failures');
  });

  it('calls lock, read, write, unlock in that order and throws LOCK_UNACQUIRED when locked', async (t) => {
    const { memory, other } = await memories(t);
    const calls: string[] = [];
    const recording: IMachineMemory<Record<string, any>> = {
      lock(id) {
        calls.push('lock');
        return memory.lock(id);
      },
      read(id) {
        calls.push('read');
        return memory.read(id);
      },
      write(id, data, prev, meta) {
        calls.push('write');
        return memory.write(id, data as FixtureRecord, prev as FixtureRecord, meta);
      },
      unlock(id) {
        calls.push('unlock');
        return memory.unlock(id);
      },
    };
    const [parent] = handlersFor(recording);
    const init = createInitEvent('parent');
    await parent!.execute(init);
    assert.deepEqual(calls, ['lock', 'read', 'write', 'unlock']);

    assert.equal(await other.lock(init.subject), true);
    calls.length = 0;
    await assert.rejects(
      parent!.execute(init),
      (error: unknown) => error instanceof TransactionViolation && error.cause === 'LOCK_UNACQUIRED',
    );
    assert.deepEqual(calls, ['lock'], 'nothing is read or written without the lock');
    assert.equal(await other.unlock(init.subject), true);
  });

  it('turns a lost compare-and-swap into WRITE_MACHINE_MEMORY_FAILURE and still unlocks', async (t) => {
    const { memory, other } = await memories(t);
    const init = createInitEvent('parent');
    const [parent, , add] = handlersFor(memory);
    const [call] = await parent!.execute(init);
    const [reply] = await add!.execute(call!);
    const racing: IMachineMemory<Record<string, any>> = {
      lock: (id) => memory.lock(id),
      unlock: (id) => memory.unlock(id),
      write: (id, data, prev, meta) => memory.write(id, data as FixtureRecord, prev as FixtureRecord, meta),
      async read(id) {
        const record = await memory.read(id);
        // Someone else writes between this read and the orchestrator's write.
        const current = await other.read(id);
        await other.write(id, { ...current!, touched: true }, current);
        return record;
      },
    };
    const racer = createOrchestratorFixture({
      name: 'parent',
      memory: racing,
      steps: [{ call: 'com.calc.add' }],
    });
    await assert.rejects(
      racer.execute(reply!),
      (error: unknown) =>
        error instanceof TransactionViolation && error.cause === 'WRITE_MACHINE_MEMORY_FAILURE',
    );
    assert.equal(await other.lock(init.subject), true, 'the lock was released');
    await other.unlock(init.subject);
  });

  it('reports memory I/O failures as LOCK_FAILURE and READ_MACHINE_MEMORY_FAILURE', async (t) => {
    const { memory } = await memories(t);
    const closed = await connectPostgresMachineMemory({ connectionString: db.url });
    await releasePostgresMachineMemory(closed);
    const [onClosed] = handlersFor(closed);
    await assert.rejects(
      onClosed!.execute(createInitEvent('parent')),
      (error: unknown) =>
        error instanceof TransactionViolation &&
        error.cause === 'LOCK_FAILURE' &&
        /MEMORY_CLOSED|closed/.test(error.message),
    );
    let unlocked = false;
    const unreadable: IMachineMemory<Record<string, any>> = {
      lock: (id) => memory.lock(id),
      async unlock(id) {
        unlocked = true;
        return memory.unlock(id);
      },
      read: () => closed.read('any'),
      write: () => Promise.reject(new Error('not reached')),
    };
    const [parent] = handlersFor(unreadable);
    await assert.rejects(
      parent!.execute(createInitEvent('parent')),
      (error: unknown) =>
        error instanceof TransactionViolation && error.cause === 'READ_MACHINE_MEMORY_FAILURE',
    );
    assert.ok(unlocked, 'unlock runs in finally');
  });

  it('rejects events whose subject is not its orchestration subject before touching the memory', async () => {
    const calls: string[] = [];
    const spy: IMachineMemory<Record<string, any>> = {
      async lock() {
        calls.push('lock');
        return true;
      },
      async unlock() {
        calls.push('unlock');
        return true;
      },
      async read() {
        calls.push('read');
        return null;
      },
      write: async () => {
        calls.push('write');
      },
    };
    const [parent] = handlersFor(spy);
    const foreign = createInitEvent('child');
    await assert.rejects(parent!.execute(foreign), /belongs to arvo\.orc\.child/);
    const plain = createArvoEvent(
      {
        type: 'arvo.orc.parent',
        source: 'com.test.client',
        subject: 'order-123',
        data: { parentSubject$$: null },
      },
      {},
      { disable: true },
    );
    await assert.rejects(parent!.execute(plain), /no valid orchestration subject/);
    assert.deepEqual(calls, []);
  });

  it('runs many workflows at once', async (t) => {
    const { memory } = await memories(t);
    const started = Date.now();
    const inits = Array.from({ length: 20 }, () => createInitEvent('parent'));
    const run = await deliverAll(handlersFor(memory), inits, { concurrent: true });
    const elapsed = Date.now() - started;
    assert.equal(run.outbox.length, 20);
    assert.ok(run.outbox.every((event) => (event.data as { status: string }).status === 'done'));
    const orchestratorEvents = run.delivered.filter((e) => e.to?.startsWith('arvo.orc.')).length;
    console.log(
      `# 20 parent+child workflows: ${run.delivered.length} deliveries (${orchestratorEvents} orchestrator), ${run.retries} lock retries, ${elapsed} ms`,
    );
  });

  it('records a span per memory operation and keeps the trace across hops', async (t) => {
    const { memory } = await memories(t);
    exporter.reset();
    const tracer = trace.getTracer('test');
    const traceId = await tracer.startActiveSpan('client', async (span) => {
      try {
        const init = createInitEvent('parent');
        const handlers = handlersFor(memory);
        // The first hop inherits the active context; later hops carry it in the events.
        const first = await handlers[0]!.execute(init, { inheritFrom: 'CONTEXT' });
        const run = await deliverAll(handlers, first);
        assert.equal(run.outbox.length, 1);
        for (const event of [...first, ...run.delivered, ...run.outbox]) {
          assert.equal(event.traceparent?.split('-')[1], span.spanContext().traceId, event.type);
        }
        return span.spanContext().traceId;
      } finally {
        span.end();
      }
    });
    const names = new Set(exporter.getFinishedSpans().map((s) => s.name));
    for (const operation of ['lock', 'read', 'write', 'unlock']) {
      assert.ok(
        names.has(`arvo-postgres.memory.${operation}`),
        `span for ${operation}: ${[...names].join(', ')}`,
      );
    }
    const write = exporter.getFinishedSpans().find((s) => s.name === 'arvo-postgres.memory.write')!;
    assert.equal(write.spanContext().traceId, traceId);
  });
});
