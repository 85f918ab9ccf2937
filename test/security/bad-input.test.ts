/**
 * Bad input, table-driven, across the API and the wire. Each case states the typed error (or the
 * outcome) it must produce; afterwards nothing was executed (the sentinel table still exists, no
 * hostile queue was created) and nothing was lost (every accepted message is handled or
 * dead-lettered with the reason).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import { ExecutionViolation } from 'arvo-event-handler';
import type pg from 'pg';
import {
  InvalidEventError,
  PayloadTooLargeError,
  PostgresEventBroker,
  UnroutableEventError,
} from '../../src/broker/index';
import { PostgresLock } from '../../src/lock/index';
import {
  connectPostgresMachineMemory,
  MachineMemoryConflictError,
  type PostgresMachineMemory,
} from '../../src/memory/index';
import { ArvoPostgresError, InvalidOptionError } from '../../src/shared/errors';
import { silentLogger } from '../../src/shared/logger';
import { clientEvent, handler, newPool, replyTo, waitFor } from '../broker/support';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { createServiceFixture } from '../support/orchestrator';

const HOSTILE = `x'); DROP TABLE sentinel; --`;
const MAX_PAYLOAD = 16_384;
/** What `slice()` leaves of an emoji: its first UTF-16 surrogate alone. */
const LONE_SURROGATE = 'cut 😀'.slice(0, 5);

type ErrorClass = abstract new (...args: any[]) => Error;
type Expectation =
  /** Refused at once with this error class (and `code`/`message` when given). */
  | { kind: 'error'; error: ErrorClass; code?: string; message: RegExp }
  /** Returns this value. */
  | { kind: 'value'; value: unknown }
  /** Accepted and handled by the echo handler; `run` returns the event it dispatched. */
  | { kind: 'delivered' }
  /** Accepted, then dead-lettered with this failure kind and reason; `run` returns the job id. */
  | { kind: 'deadLettered'; failure: string; reason: RegExp };

interface Case {
  name: string;
  run: () => unknown;
  expect: Expectation;
}

/** An object that looks like an ArvoEvent to the broker but serializes to `json`. */
function fakeEvent(json: Record<string, unknown>): ArvoEvent {
  const valid = clientEvent('com.bad.echo').toJSON() as Record<string, unknown>;
  const merged = { ...valid, ...json };
  return { ...merged, toJSON: () => merged } as unknown as ArvoEvent;
}

function nested(depth: number): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let current = root;
  for (let level = 0; level < depth; level++) {
    const child: Record<string, unknown> = {};
    current.next = child;
    current = child;
  }
  return root;
}

describe('bad input: typed errors, nothing executed, nothing lost', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let broker: PostgresEventBroker;
  let memory: PostgresMachineMemory;
  let otherMemory: PostgresMachineMemory;
  let lock: PostgresLock;
  const echoed: ArvoEvent[] = [];
  const deadLettered: Array<{ name: string; jobId: string; failure: string; reason: RegExp }> = [];

  /** Inserts a job straight into pg-boss's job table, as another producer would, with the queue's settings. */
  async function insertRawJob(queue: string, data: unknown): Promise<string> {
    const id = randomUUID();
    await pool.query(
      `INSERT INTO pgboss.job (id, name, data, dead_letter, policy, retry_limit)
       SELECT $1, q.name, $3::jsonb, q.dead_letter, q.policy, q.retry_limit FROM pgboss.queue q WHERE q.name = $2`,
      [id, queue, JSON.stringify(data)],
    );
    return id;
  }

  before(async () => {
    db = await createTestDatabase('sec_bad_input');
    pool = newPool(db.url);
    await pool.query('CREATE TABLE sentinel (id int)');
    broker = new PostgresEventBroker({
      connectionString: db.url,
      logger: silentLogger,
      maxPayloadBytes: MAX_PAYLOAD,
      defaults: { worker: { retryLimit: 1, retryDelay: 1 } },
    });
    await broker.register(
      handler('com.bad.echo', async (event) => {
        echoed.push(event);
        return [];
      }),
    );
    await broker.register(
      handler('com.bad.emit', async (event) => {
        const mode = (event.data as { mode?: string }).mode;
        if (mode === 'nul') return [replyTo(event, 'evt.bad.reply', { text: 'a\u0000b' }, 'com.bad.echo')];
        if (mode === 'surrogate')
          return [replyTo(event, 'evt.bad.reply', { text: LONE_SURROGATE }, 'com.bad.echo')];
        if (mode === 'surrogateError') throw new ExecutionViolation(`failed on ${LONE_SURROGATE}`);
        if (mode === 'huge')
          return [replyTo(event, 'evt.bad.reply', { text: 'x'.repeat(MAX_PAYLOAD) }, 'com.bad.echo')];
        return { notEvents: true } as never;
      }),
    );
    await broker.register(createServiceFixture('com.bad.contract'));
    await broker.start();
    memory = await connectPostgresMachineMemory({ connectionString: db.url, logger: silentLogger });
    otherMemory = await connectPostgresMachineMemory({
      connectionString: db.url,
      logger: silentLogger,
      migrate: 'noop',
    });
    lock = new PostgresLock({ connectionString: db.url, logger: silentLogger, sweepIntervalMs: 0 });
    await lock.start();
  });

  after(() => closeAll(broker, memory, otherMemory, lock, pool, db));

  const url = () => db.url;
  const optionError = (path: string): Expectation => ({
    kind: 'error',
    error: InvalidOptionError,
    code: 'INVALID_OPTION',
    message: new RegExp(path.replace(/\./g, '\\.')),
  });

  const cases: Case[] = [
    // ---- options: types, ranges, hostile identifiers (refused before any statement runs)
    {
      name: 'broker schema with SQL metacharacters',
      run: () => new PostgresEventBroker({ connectionString: url(), schema: HOSTILE }),
      expect: optionError('schema'),
    },
    {
      name: 'broker schema with a double quote',
      run: () => new PostgresEventBroker({ connectionString: url(), schema: 'pg"boss' }),
      expect: optionError('schema'),
    },
    {
      name: 'broker schema of 200 characters',
      run: () => new PostgresEventBroker({ connectionString: url(), schema: 's'.repeat(200) }),
      expect: optionError('schema'),
    },
    {
      name: 'maxPayloadBytes of the wrong type',
      run: () => new PostgresEventBroker({ connectionString: url(), maxPayloadBytes: '1MB' as never }),
      expect: optionError('maxPayloadBytes'),
    },
    {
      name: 'maxPayloadBytes out of range',
      run: () => new PostgresEventBroker({ connectionString: url(), maxPayloadBytes: -1 }),
      expect: optionError('maxPayloadBytes'),
    },
    {
      name: 'retryLimit not an integer',
      run: () =>
        new PostgresEventBroker({ connectionString: url(), defaults: { worker: { retryLimit: 1.5 } } }),
      expect: optionError('defaults.worker.retryLimit'),
    },
    {
      name: 'circuit breaker threshold 0',
      run: () =>
        new PostgresEventBroker({ connectionString: url(), circuitBreaker: { failureThreshold: 0 } }),
      expect: optionError('circuitBreaker.failureThreshold'),
    },
    {
      name: 'misspelled option',
      run: () => new PostgresEventBroker({ connectionString: url(), conectionString: url() } as never),
      expect: optionError('conectionString'),
    },
    {
      name: 'dead-letter queue name with a NUL byte',
      run: () => new PostgresEventBroker({ connectionString: url(), deadLetterQueue: 'dead\u0000letter' }),
      expect: optionError('deadLetterQueue'),
    },
    {
      name: 'handler source with SQL metacharacters',
      run: () => broker.register(handler(HOSTILE, async () => [])),
      expect: optionError('handler.source'),
    },
    {
      name: 'handler source of 201 characters',
      run: () => broker.register(handler(`com.${'q'.repeat(197)}`, async () => [])),
      expect: optionError('handler.source'),
    },
    {
      name: 'worker expireInSeconds 0',
      run: () =>
        broker.register(
          handler('com.bad.expiry', async () => []),
          { worker: { expireInSeconds: 0 } },
        ),
      expect: optionError('worker.expireInSeconds'),
    },
    {
      name: 'memory table name with SQL metacharacters',
      run: () => connectPostgresMachineMemory({ connectionString: url(), tables: { state: HOSTILE } }),
      expect: optionError('tables.state'),
    },
    {
      name: 'memory lock TTL 0',
      run: () => connectPostgresMachineMemory({ connectionString: url(), lock: { ttlMs: 0 } }),
      expect: optionError('lock.ttlMs'),
    },
    {
      name: 'memory migrate mode unknown',
      run: () => connectPostgresMachineMemory({ connectionString: url(), migrate: 'yes' as never }),
      expect: optionError('migrate'),
    },
    {
      name: 'lock table name of 64 characters',
      run: () => new PostgresLock({ connectionString: url(), table: 't'.repeat(64) }),
      expect: optionError('table'),
    },
    // ---- dispatch
    {
      name: 'dispatch of something that is not an event',
      run: () => broker.dispatch({ id: 'x' } as never),
      expect: {
        kind: 'error',
        error: InvalidEventError,
        code: 'INVALID_EVENT',
        message: /Expected an ArvoEvent/,
      },
    },
    {
      name: 'dispatch to an unknown `to`',
      run: () => broker.dispatch(clientEvent('com.nobody.home')),
      expect: {
        kind: 'error',
        error: UnroutableEventError,
        code: 'UNROUTABLE_EVENT',
        message: /com\.nobody\.home/,
      },
    },
    {
      name: 'dispatch without `to`',
      run: () => broker.dispatch(fakeEvent({ to: null })),
      expect: { kind: 'error', error: InvalidEventError, code: 'INVALID_EVENT', message: /'to'/ },
    },
    {
      name: 'dispatch of an oversized payload',
      run: () => broker.dispatch(clientEvent('com.bad.echo', { blob: 'x'.repeat(MAX_PAYLOAD) })),
      expect: {
        kind: 'error',
        error: PayloadTooLargeError,
        code: 'PAYLOAD_TOO_LARGE',
        message: /over the limit of 16384 bytes/,
      },
    },
    {
      name: 'dispatch with a NUL byte in data',
      run: () => broker.dispatch(clientEvent('com.bad.echo', { text: 'a\u0000b' })),
      expect: { kind: 'error', error: InvalidEventError, code: 'INVALID_EVENT', message: /NUL character/ },
    },
    {
      name: 'dispatch with a NUL byte in the subject',
      run: () => broker.dispatch(fakeEvent({ subject: 'sub\u0000ject' })),
      expect: { kind: 'error', error: InvalidEventError, code: 'INVALID_EVENT', message: /NUL character/ },
    },
    {
      name: 'dispatch with a lone surrogate in data',
      run: () => broker.dispatch(clientEvent('com.bad.echo', { text: LONE_SURROGATE })),
      expect: {
        kind: 'error',
        error: InvalidEventError,
        code: 'INVALID_EVENT',
        message: /lone UTF-16 surrogate/,
      },
    },
    {
      name: 'dispatch with a lone surrogate in the subject',
      run: () => broker.dispatch(fakeEvent({ subject: LONE_SURROGATE })),
      expect: {
        kind: 'error',
        error: InvalidEventError,
        code: 'INVALID_EVENT',
        message: /lone UTF-16 surrogate/,
      },
    },
    {
      name: 'dispatch with top-level array data',
      run: () => broker.dispatch(fakeEvent({ data: [1, 2, 3] })),
      expect: {
        kind: 'error',
        error: InvalidEventError,
        code: 'INVALID_EVENT',
        message: /cannot be rebuilt/,
      },
    },
    {
      name: 'dispatch with a 10 kB subject (over MAX_INDEXED_TEXT_BYTES)',
      run: () => broker.dispatch(clientEvent('com.bad.echo', {}, { subject: `s-${'x'.repeat(10_240)}` })),
      expect: {
        kind: 'error',
        error: InvalidEventError,
        code: 'INVALID_EVENT',
        message: /its subject is 10242 bytes .*MAX_INDEXED_TEXT_BYTES/,
      },
    },
    {
      name: 'dispatch with JSON nested 200 deep is accepted',
      run: async () => {
        const event = clientEvent('com.bad.echo', nested(200));
        await broker.dispatch(event);
        return event;
      },
      expect: { kind: 'delivered' },
    },
    {
      name: 'dispatch with JSON nested 100000 deep',
      run: () => broker.dispatch(fakeEvent({ data: nested(100_000) })),
      expect: {
        kind: 'error',
        error: InvalidEventError,
        code: 'INVALID_EVENT',
        message: /cannot be serialized/,
      },
    },
    // ---- accepted, then dead-lettered with the reason
    {
      name: 'event failing the handler contract (Arvo validation)',
      run: async () => {
        const event = clientEvent('com.bad.contract', {}, { type: 'com.bad.other' });
        return broker.dispatch(event);
      },
      expect: { kind: 'deadLettered', failure: 'config', reason: /com\.bad\.other/ },
    },
    {
      name: 'handler output with a NUL byte',
      run: () => broker.dispatch(clientEvent('com.bad.emit', { mode: 'nul' })),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /NUL character/ },
    },
    {
      name: 'handler output with a lone surrogate',
      run: () => broker.dispatch(clientEvent('com.bad.emit', { mode: 'surrogate' })),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /lone UTF-16 surrogate/ },
    },
    {
      name: 'ExecutionViolation whose message holds a lone surrogate (stored as U+FFFD)',
      run: () => broker.dispatch(clientEvent('com.bad.emit', { mode: 'surrogateError' })),
      expect: { kind: 'deadLettered', failure: 'execution', reason: /failed on cut \uFFFD$/ },
    },
    {
      name: 'oversized handler output',
      run: () => broker.dispatch(clientEvent('com.bad.emit', { mode: 'huge' })),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /over the limit/ },
    },
    {
      name: 'handler returning neither events nor { events }',
      run: () => broker.dispatch(clientEvent('com.bad.emit', { mode: 'object' })),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /returned neither/ },
    },
    {
      name: 'wire: job data without event fields',
      run: () => insertRawJob('com.bad.echo', { nope: 1 }),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /cannot be rebuilt/ },
    },
    {
      name: 'wire: job data a top-level array',
      run: () => insertRawJob('com.bad.echo', [1, 2, 3]),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /not an event object/ },
    },
    {
      name: 'wire: job data a JSON string',
      run: () => insertRawJob('com.bad.echo', 'hello'),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /not an event object/ },
    },
    {
      name: 'wire: job data null',
      run: () => insertRawJob('com.bad.echo', null),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /not an event object/ },
    },
    {
      name: 'wire: event without `to`',
      run: () => {
        const { to: _to, ...json } = clientEvent('com.bad.echo').toJSON() as Record<string, unknown>;
        return insertRawJob('com.bad.echo', json);
      },
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /'to'/ },
    },
    {
      name: 'wire: event with a numeric id',
      run: () =>
        insertRawJob('com.bad.echo', { ...(clientEvent('com.bad.echo').toJSON() as object), id: 42 }),
      expect: { kind: 'deadLettered', failure: 'invalidEvent', reason: /cannot be rebuilt/ },
    },
    // ---- memory and lock
    {
      name: 'memory write with prevData of another subject',
      run: async () => {
        await memory.write('subject-a', { n: 1 }, null);
        await memory.write('subject-b', { n: 2 }, null);
        const other = await memory.read('subject-b');
        return memory.write('subject-a', { n: 3 }, other as never);
      },
      expect: {
        kind: 'error',
        error: MachineMemoryConflictError,
        code: 'MEMORY_WRITE_CONFLICT',
        message: /another workflow/,
      },
    },
    {
      name: 'memory write with a NUL byte in the record',
      run: () => memory.write('subject-nul', { text: 'a\u0000b' }, null),
      expect: { kind: 'error', error: ArvoPostgresError, code: 'INVALID_ARGUMENT', message: /NUL character/ },
    },
    {
      name: 'memory write with a lone surrogate in the record',
      run: () => memory.write('subject-surrogate', { text: LONE_SURROGATE }, null),
      expect: {
        kind: 'error',
        error: ArvoPostgresError,
        code: 'INVALID_ARGUMENT',
        message: /lone UTF-16 surrogate/,
      },
    },
    {
      name: 'memory lock of a subject with a lone surrogate',
      run: () => memory.lock(LONE_SURROGATE),
      expect: {
        kind: 'error',
        error: ArvoPostgresError,
        code: 'INVALID_ARGUMENT',
        message: /lone UTF-16 surrogate/,
      },
    },
    {
      name: 'memory read of a subject with a NUL byte',
      run: () => memory.read('a\u0000b'),
      expect: { kind: 'error', error: ArvoPostgresError, code: 'INVALID_ARGUMENT', message: /NUL character/ },
    },
    {
      name: 'memory write of a top-level array',
      run: () => memory.write('subject-array', [1, 2] as never, null),
      expect: { kind: 'error', error: ArvoPostgresError, code: 'INVALID_ARGUMENT', message: /plain object/ },
    },
    {
      name: 'memory unlock of a lock never held (another holder keeps it)',
      run: async () => {
        assert.equal(await otherMemory.lock('subject-held'), true);
        const result = await memory.unlock('subject-held');
        assert.equal(await otherMemory.unlock('subject-held'), true, 'the holder lost its lock');
        return result;
      },
      expect: { kind: 'value', value: false },
    },
    {
      name: 'lock release with a forged handle',
      run: async () => {
        const real = await lock.acquire('key-held');
        const forged = { ...real!, owner: randomUUID() };
        const result = await lock.release(forged);
        assert.equal(await lock.release(real!), true, 'the holder lost its lock');
        return result;
      },
      expect: { kind: 'value', value: false },
    },
  ];

  for (const entry of cases) {
    it(entry.name, async () => {
      const expectation = entry.expect;
      switch (expectation.kind) {
        case 'error': {
          let thrown: unknown;
          try {
            await entry.run();
          } catch (error) {
            thrown = error;
          }
          assert.ok(
            thrown instanceof expectation.error,
            `expected ${expectation.error.name}, got ${String(thrown)}`,
          );
          assert.ok(thrown instanceof ArvoPostgresError, 'every refusal is an ArvoPostgresError');
          if (expectation.code) assert.equal(thrown.code, expectation.code);
          assert.match(thrown.message, expectation.message);
          return;
        }
        case 'value':
          assert.deepEqual(await entry.run(), expectation.value);
          return;
        case 'delivered': {
          const event = (await entry.run()) as ArvoEvent;
          const received = await waitFor(`delivery of ${event.id}`, () =>
            echoed.find((e) => e.id === event.id),
          );
          assert.equal(received.subject, event.subject);
          assert.deepEqual(received.data, event.data);
          return;
        }
        case 'deadLettered': {
          const jobId = (await entry.run()) as string;
          const dead = await waitFor(
            `dead letter of ${entry.name}`,
            async () =>
              (
                await pool.query('SELECT source_output FROM pgboss.job WHERE name = $1 AND source_id = $2', [
                  'arvo.dead-letter',
                  jobId,
                ])
              ).rows[0],
            30_000,
          );
          assert.equal(dead.source_output.kind, expectation.failure, JSON.stringify(dead.source_output));
          assert.match(dead.source_output.error.message, expectation.reason);
          deadLettered.push({
            name: entry.name,
            jobId,
            failure: expectation.failure,
            reason: expectation.reason,
          });
          return;
        }
      }
    });
  }

  it('covers at least 25 cases; nothing was executed and nothing lost', async () => {
    assert.ok(cases.length >= 25, `${cases.length} cases`);
    const { rows: sentinel } = await pool.query("SELECT to_regclass('public.sentinel') AS table");
    assert.equal(sentinel[0].table, 'sentinel', 'the sentinel table still exists');
    const { rows: queues } = await pool.query(`SELECT name FROM pgboss.queue WHERE name ~ '[''";() ]'`);
    assert.deepEqual(queues, [], 'no queue with a hostile name');
    const { rows: tables } = await pool.query(
      `SELECT table_name FROM information_schema.tables WHERE table_name ~ '[''";() ]' OR length(table_name) > 63`,
    );
    assert.deepEqual(tables, []);
    // Every accepted message is accounted for: handled, or dead-lettered with its reason.
    const expectedDead = cases.filter((entry) => entry.expect.kind === 'deadLettered').length;
    assert.equal(deadLettered.length, expectedDead);
    const { rows: open } = await pool.query(
      `SELECT name, state FROM pgboss.job WHERE name LIKE 'com.bad.%' AND state NOT IN ('completed', 'failed')`,
    );
    assert.deepEqual(open, [], 'no job left unsettled');
  });
});
