import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Attributes,
  type Meter,
  type MeterProvider,
  metrics,
  type ObservableCallback,
  type ObservableResult,
} from '@opentelemetry/api';
import { PostgresEventBroker } from '../../src/broker/index';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { TransactionViolation } from '../support/orchestrator';
import { clientEvent, handler, memoryLogger, replyTo, waitFor } from './support';

/**
 * A recording OpenTelemetry MeterProvider (the SDK's in-memory exporter, `@opentelemetry/sdk-metrics`,
 * is not a dependency): keeps every `add`/`record` with its attributes and runs gauge callbacks on
 * demand, as an SDK's collection would.
 */
class RecordingMeterProvider implements MeterProvider {
  readonly meterNames: string[] = [];
  readonly recorded: Array<{ instrument: string; value: number; attributes: Attributes }> = [];
  readonly callbacks = new Map<string, Set<ObservableCallback>>();

  getMeter(name: string): Meter {
    this.meterNames.push(name);
    const record =
      (instrument: string) =>
      (value: number, attributes: Attributes = {}) => {
        this.recorded.push({ instrument, value, attributes });
      };
    const observable = (instrument: string) => {
      const set = new Set<ObservableCallback>();
      this.callbacks.set(instrument, set);
      return {
        addCallback: (callback: ObservableCallback) => set.add(callback),
        removeCallback: (callback: ObservableCallback) => set.delete(callback),
      };
    };
    return {
      createCounter: (instrument: string) => ({ add: record(instrument) }),
      createUpDownCounter: (instrument: string) => ({ add: record(instrument) }),
      createHistogram: (instrument: string) => ({ record: record(instrument) }),
      createGauge: (instrument: string) => ({ record: record(instrument) }),
      createObservableGauge: observable,
      createObservableCounter: observable,
      createObservableUpDownCounter: observable,
      addBatchObservableCallback: () => {},
      removeBatchObservableCallback: () => {},
    } as unknown as Meter;
  }

  /** Sum of the values recorded on `instrument` whose attributes include `match`. */
  sum(instrument: string, match: Attributes): number {
    return this.matching(instrument, match).reduce((total, entry) => total + entry.value, 0);
  }

  matching(instrument: string, match: Attributes) {
    return this.recorded.filter(
      (entry) =>
        entry.instrument === instrument &&
        Object.entries(match).every(([key, value]) => entry.attributes[key] === value),
    );
  }

  /** Runs the callbacks of an observable instrument, as a collection would. */
  async observe(instrument: string): Promise<Array<{ value: number; attributes: Attributes }>> {
    const observed: Array<{ value: number; attributes: Attributes }> = [];
    const result = {
      observe: (value: number, attributes: Attributes = {}) => observed.push({ value, attributes }),
    } as ObservableResult;
    for (const callback of this.callbacks.get(instrument) ?? []) await callback(result);
    return observed;
  }
}

/** `name{labels} value` lines of a Prometheus exposition, as a map. */
function scrape(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(\S+\{.*\}) (\S+)$/.exec(line);
    assert.ok(match, `malformed sample line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

const OK = 'com.metrics.ok';
const FAIL = 'com.metrics.fail';
const CONTENDED = 'com.metrics.contended';

describe('Broker metrics: Prometheus scrape and OpenTelemetry instruments after a workload', () => {
  let db: TestDatabase;
  let broker: PostgresEventBroker;
  const provider = new RecordingMeterProvider();
  const handled = new Set<string>();
  const contended = new Map<string, number>();
  let completions = 0;

  before(async () => {
    // Before the broker is created: it takes its meter from the global provider.
    metrics.setGlobalMeterProvider(provider);
    db = await createTestDatabase('broker_metrics');
    broker = new PostgresEventBroker({
      connectionString: db.url,
      logger: memoryLogger(),
      defaults: { worker: { retryLimit: 0 } },
      lockContention: { minDelayMs: 20, maxDelayMs: 40 },
    });
    await broker.register(
      handler(OK, async (event) => {
        await new Promise((resolve) => setTimeout(resolve, 30));
        handled.add(event.id);
        return [replyTo(event, 'evt.ok.done')];
      }),
    );
    await broker.register(
      handler(FAIL, async () => {
        throw new Error('always fails');
      }),
    );
    await broker.register(
      handler(CONTENDED, async (event) => {
        const seen = (contended.get(event.id) ?? 0) + 1;
        contended.set(event.id, seen);
        if (seen === 1) throw new TransactionViolation('LOCK_UNACQUIRED', 'locked by another holder');
        return [replyTo(event, 'evt.contended.done')];
      }),
    );
    await broker.onWorkflowComplete({
      source: 'com.test.client',
      listener: async () => {
        completions += 1;
      },
    });
    await broker.start();
    for (let i = 0; i < 5; i += 1) await broker.dispatch(clientEvent(OK, { i }));
    for (let i = 0; i < 2; i += 1) await broker.dispatch(clientEvent(FAIL, { i }));
    await broker.dispatch(clientEvent(CONTENDED));
    await waitFor(
      'the workload to settle',
      async () => {
        const stats = await broker.getStats();
        const of = (name: string) => stats.find((entry) => entry.name === name)!;
        return (
          completions === 6 &&
          of(FAIL).deadLettered === 2 &&
          stats.every((entry) => entry.name === 'arvo.dead-letter' || entry.queued + entry.active === 0)
        );
      },
      30_000,
    );
  });

  after(async () => {
    await broker?.stop({ timeoutMs: 2000 });
    await db?.drop();
  });

  it('scrapes exact counters, histogram and queue gauges in Prometheus text format', async () => {
    const text = await broker.getMetrics();
    assert.match(text, /^# HELP arvo_postgres_queue_jobs /m);
    assert.match(text, /^# TYPE arvo_postgres_handler_duration_seconds histogram$/m);
    const samples = scrape(text);
    const value = (key: string) => samples.get(key);

    assert.equal(value(`arvo_postgres_jobs_processed_total{queue="${OK}"}`), 5);
    assert.equal(value(`arvo_postgres_jobs_processed_total{queue="${CONTENDED}"}`), 1);
    assert.equal(value('arvo_postgres_jobs_processed_total{queue="com.test.client"}'), 6);
    assert.equal(value(`arvo_postgres_jobs_processed_total{queue="${FAIL}"}`), undefined);
    assert.equal(value(`arvo_postgres_jobs_failed_total{queue="${FAIL}",kind="infrastructure"}`), 2);
    assert.equal(value(`arvo_postgres_jobs_dead_lettered_total{queue="${FAIL}",kind="infrastructure"}`), 2);
    assert.equal(value(`arvo_postgres_lock_contention_total{queue="${CONTENDED}"}`), 1);
    // The contended job's rescheduled copy is not a failure.
    assert.equal(
      value(`arvo_postgres_jobs_failed_total{queue="${CONTENDED}",kind="lockContention"}`),
      undefined,
    );

    // Histogram: every attempt (5 ok; 2 failed; contended twice), cumulative buckets, ≥ 30 ms sleeps.
    assert.equal(value(`arvo_postgres_handler_duration_seconds_count{queue="${OK}"}`), 5);
    assert.equal(value(`arvo_postgres_handler_duration_seconds_bucket{queue="${OK}",le="+Inf"}`), 5);
    assert.equal(value(`arvo_postgres_handler_duration_seconds_bucket{queue="${OK}",le="0.025"}`), 0);
    assert.equal(value(`arvo_postgres_handler_duration_seconds_count{queue="${FAIL}"}`), 2);
    assert.equal(value(`arvo_postgres_handler_duration_seconds_count{queue="${CONTENDED}"}`), 2);
    assert.ok(value(`arvo_postgres_handler_duration_seconds_sum{queue="${OK}"}`)! >= 0.15);

    // Queue gauges come from the exact stats query.
    assert.equal(value(`arvo_postgres_queue_jobs{queue="${OK}",state="completed"}`), 5);
    assert.equal(value(`arvo_postgres_queue_jobs{queue="${OK}",state="queued"}`), 0);
    assert.equal(value(`arvo_postgres_queue_jobs{queue="${FAIL}",state="failed"}`), 2);
    assert.equal(value(`arvo_postgres_queue_dead_lettered{queue="${FAIL}"}`), 2);
    assert.equal(value('arvo_postgres_queue_jobs{queue="arvo.dead-letter",state="queued"}'), 2);
    assert.equal(value(`arvo_postgres_queue_oldest_age_seconds{queue="${OK}"}`), 0);
  });

  it('feeds the same numbers to OpenTelemetry instruments of the arvo-postgres meter', async () => {
    assert.ok(provider.meterNames.includes('arvo-postgres'));
    const queue = 'messaging.destination.name';
    assert.equal(provider.sum('arvo_postgres.jobs.processed', { [queue]: OK }), 5);
    assert.equal(provider.sum('arvo_postgres.jobs.failed', { [queue]: FAIL }), 2);
    assert.equal(
      provider.sum('arvo_postgres.jobs.dead_lettered', {
        [queue]: FAIL,
        'arvo_postgres.failure.kind': 'infrastructure',
      }),
      2,
    );
    assert.equal(provider.sum('arvo_postgres.lock_contention', { [queue]: CONTENDED }), 1);
    const durations = provider.matching('arvo_postgres.handler.duration', { [queue]: OK });
    assert.equal(durations.length, 5);
    assert.ok(durations.every((entry) => entry.value >= 0.025 && entry.value < 30));

    const depth = await provider.observe('arvo_postgres.queue.depth');
    const observed = (name: string, state: string) =>
      depth.find((entry) => entry.attributes[queue] === name && entry.attributes.state === state)?.value;
    assert.equal(observed(FAIL, 'dead_lettered'), 2);
    assert.equal(observed(FAIL, 'failed'), 2);
    assert.equal(observed('arvo.dead-letter', 'queued'), 2);
    assert.equal(observed(OK, 'queued'), 0);
  });

  it('stops observing queue depth when the broker stops', async () => {
    await broker.stop({ timeoutMs: 2000 });
    assert.deepEqual(await provider.observe('arvo_postgres.queue.depth'), []);
    await assert.rejects(broker.getMetrics(), /not started|stopped|getStats/i);
  });
});
