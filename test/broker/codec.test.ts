import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import { createArvoEvent } from 'arvo-core';
import { ConfigViolation, ContractViolation, ExecutionViolation } from 'arvo-event-handler';
import { decodeEvent, encodeEvent, serializeEvent } from '../../src/broker/event-codec';
import { InvalidEventError, PayloadTooLargeError } from '../../src/broker/index';
import { resolveBrokerOptions, resolveWorkerOptions } from '../../src/broker/options';
import { actionFor, classifyFailure } from '../../src/broker/policy';
import { contextFromTraceHeaders } from '../../src/broker/tracing';
import { InvalidOptionError } from '../../src/shared/errors';
import { TransactionViolation } from '../support/orchestrator';

/** A plain event with `data` for the codec. */
function codecEvent(data: Record<string, unknown>) {
  return createArvoEvent(
    { source: 'com.test.client', type: 'com.test.codec', subject: 's', to: 'com.test.codec', data },
    {},
    { disable: true },
  );
}

describe('event codec', () => {
  it('stores toJSON() and rebuilds an equal event, extensions and nullable fields included', () => {
    const event = createArvoEvent(
      {
        source: 'com.test.client',
        type: 'com.test.codec',
        subject: 'subject with spaces/and?chars',
        to: 'com.test.codec',
        redirectto: 'com.test.back',
        accesscontrol: 'role=admin',
        executionunits: 3,
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        tracestate: 'vendor=value',
        data: { list: [1, { deep: true }], text: 'é', when: new Date('2026-01-02T03:04:05.000Z') },
      },
      { tenant: 'acme', priority: 7 },
      { disable: true },
    );
    const { stored, bytes } = encodeEvent(event, 1024 * 1024);
    assert.equal(bytes, Buffer.byteLength(JSON.stringify(event.toJSON())));
    const rebuilt = decodeEvent(stored);
    // A Date in data travels as its ISO string.
    assert.deepEqual(rebuilt.toJSON(), JSON.parse(JSON.stringify(event.toJSON())));
    assert.equal((rebuilt.data as any).when, '2026-01-02T03:04:05.000Z');
    assert.equal(rebuilt.subject, event.subject);
    assert.deepEqual(rebuilt.extensions, { tenant: 'acme', priority: 7 });
  });

  it('the checked text is what the job stores, and its size is exact', () => {
    const event = codecEvent({ text: 'é€😀', when: new Date('2026-01-02T03:04:05.000Z') });
    const serialized = serializeEvent(event, 1024 * 1024);
    assert.equal(serialized.text, JSON.stringify(event.toJSON()));
    assert.equal(serialized.bytes, Buffer.byteLength(serialized.text, 'utf8'));
    assert.equal(serialized.stored.id, event.id);
    // pg-boss serializes the job's data (`stored`) into its insert: that must write out exactly the checked text.
    assert.equal(JSON.stringify({ data: serialized.stored }), `{"data":${serialized.text}}`);
    // The limit is exact: at the size it passes, one byte under it is refused.
    assert.equal(serializeEvent(event, serialized.bytes).bytes, serialized.bytes);
    assert.throws(() => serializeEvent(event, serialized.bytes - 1), PayloadTooLargeError);
  });

  it('rejects what cannot be stored or rebuilt with typed errors', () => {
    assert.throws(() => encodeEvent({ id: 'x' }, 1000), InvalidEventError);
    assert.throws(() => decodeEvent('text'), InvalidEventError);
    assert.throws(() => decodeEvent({ id: 'x', type: 'bad' }), /cannot be rebuilt/);
    const event = codecEvent({ a: 'b'.repeat(500) });
    assert.throws(() => encodeEvent(event, 300), PayloadTooLargeError);
  });
});

describe('error policy', () => {
  const cases: Array<[string, unknown, string, string]> = [
    ['ContractViolation', new ContractViolation('x'), 'contract', 'deadLetter'],
    ['ConfigViolation', new ConfigViolation('x'), 'config', 'deadLetter'],
    ['ExecutionViolation', new ExecutionViolation('x'), 'execution', 'deadLetter'],
    ['lock contention', new TransactionViolation('LOCK_UNACQUIRED', 'x'), 'lockContention', 'reschedule'],
    [
      'memory conflict',
      new TransactionViolation('WRITE_MACHINE_MEMORY_FAILURE', 'x'),
      'transaction',
      'retry',
    ],
    ['plain error', new Error('x'), 'infrastructure', 'retry'],
    ['thrown string', 'x', 'infrastructure', 'retry'],
    ['payload too large', new PayloadTooLargeError('e', 2, 1), 'invalidEvent', 'deadLetter'],
  ];
  for (const [label, error, kind, action] of cases) {
    it(`${label} → ${kind} → ${action}`, () => {
      const classified = classifyFailure(error);
      assert.equal(classified, kind);
      assert.equal(actionFor(classified, 'deadLetter'), action);
    });
  }

  it('finds LOCK_UNACQUIRED in violation metadata too (arvo-xstate style)', () => {
    const error = Object.assign(new Error('locked'), {
      name: 'ViolationError<OrchestratorTransaction>',
      type: 'OrchestratorTransaction',
      metadata: { cause: 'LOCK_UNACQUIRED' },
    });
    assert.equal(classifyFailure(error), 'lockContention');
  });

  it('retries ExecutionViolation when so configured', () => {
    assert.equal(actionFor('execution', 'retry'), 'retry');
  });
});

describe('trace context extraction', () => {
  it('parses a W3C traceparent with tracestate', () => {
    const ctx = contextFromTraceHeaders('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'a=1,b=2');
    const span = ctx && trace.getSpanContext(ctx);
    assert.equal(span?.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(span?.spanId, 'b7ad6b7169203331');
    assert.equal(span?.traceFlags, 1);
    assert.equal(span?.isRemote, true);
    assert.equal(span?.traceState?.get('b'), '2');
  });

  it('ignores missing or invalid headers', () => {
    for (const header of [
      null,
      '',
      'garbage',
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    ]) {
      assert.equal(contextFromTraceHeaders(header, null), undefined, String(header));
    }
  });
});

describe('worker options', () => {
  const defaults = resolveBrokerOptions({ connectionString: 'postgres://x@localhost/db' }).worker;

  it('maps concurrency onto fetch loops × batch size exactly', () => {
    for (const [concurrency, loops, batch] of [
      [1, 1, 1],
      [5, 1, 5],
      [20, 2, 10],
    ] as const) {
      const resolved = resolveWorkerOptions({ concurrency }, 'worker', defaults);
      assert.deepEqual([resolved.localConcurrency, resolved.batchSize], [loops, batch]);
    }
  });

  it('refuses concurrency together with batchSize or localConcurrency, and a too-short notify poll', () => {
    assert.throws(
      () => resolveWorkerOptions({ concurrency: 4, batchSize: 2 }, 'worker', defaults),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'worker.concurrency',
    );
    assert.throws(
      () =>
        resolveWorkerOptions(
          { pollingIntervalSeconds: 5, notifyPollingIntervalSeconds: 1 },
          'worker',
          defaults,
        ),
      (error: unknown) =>
        error instanceof InvalidOptionError && error.option === 'worker.notifyPollingIntervalSeconds',
    );
  });

  it('defaults: batches of 10, two loops, 1 s backstop poll, retries with backoff', () => {
    assert.deepEqual(defaults, {
      batchSize: 10,
      localConcurrency: 2,
      retryLimit: 3,
      retryDelay: 1,
      retryBackoff: true,
      retryDelayMax: 60,
      expireInSeconds: 300,
      pollingIntervalSeconds: 1,
      notifyPollingIntervalSeconds: 1,
    });
  });
});
