import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Attributes,
  type BatchObservableCallback,
  type BatchObservableResult,
  type Meter,
  type MeterProvider,
  type MetricOptions,
  metrics,
} from '@opentelemetry/api';
import { DatabaseUnavailableError, PostgresEventBroker } from '../../src/broker/index';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { TransactionViolation } from '../support/orchestrator';
import { freePort } from '../support/postgres-server';
import { clientEvent, handler, memoryLogger, replyTo, waitFor } from './support';

/**
 * A recording OpenTelemetry MeterProvider (the SDK's in-memory exporter, `@opentelemetry/sdk-metrics`,
 * is not a dependency): keeps every instrument created, every `add`/`record` with its attributes, and
 * runs the observable callbacks on demand, as an SDK's collection would.
 */
class RecordingMeterProvider implements MeterProvider {
  readonly meterNames: string[] = [];
  /** Instruments of the `arvo-postgres` meter by name, as created. */
  readonly instruments = new Map<string, { kind: 'counter' | 'histogram' | 'gauge'; unit?: string }>();
  readonly recorded: Array<{ instrument: string; value: number; attributes: Attributes }> = [];
  readonly batchCallbacks = new Set<BatchObservableCallback>();

  getMeter(name: string): Meter {
    this.meterNames.push(name);
    const record =
      (instrument: string) =>
      (value: number, attributes: Attributes = {}) => {
        this.recorded.push({ instrument, value, attributes });
      };
    const create =
      (kind: 'counter' | 'histogram' | 'gauge', method: 'add' | 'record' | null) =>
      (instrument: string, options: MetricOptions = {}) => {
        if (name === 'arvo-postgres') this.instruments.set(instrument, { kind, unit: options.unit });
        return method ? { [method]: record(instrument) } : { instrument };
      };
    return {
      createCounter: create('counter', 'add'),
      createHistogram: create('histogram', 'record'),
      createObservableGauge: create('gauge', null),
      createUpDownCounter: create('counter', 'add'),
      createGauge: create('gauge', 'record'),
      createObservableCounter: create('counter', null),
      createObservableUpDownCounter: create('counter', null),
      addBatchObservableCallback: (callback: BatchObservableCallback) => this.batchCallbacks.add(callback),
      removeBatchObservableCallback: (callback: BatchObservableCallback) =>
        this.batchCallbacks.delete(callback),
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

  /** Runs the observable callbacks, as a collection would: what each gauge observed. */
  async observe(): Promise<Array<{ instrument: string; value: number; attributes: Attributes }>> {
    const observed: Array<{ instrument: string; value: number; attributes: Attributes }> = [];
    const result = {
      observe: (gauge: { instrument: string }, value: number, attributes: Attributes = {}) =>
        observed.push({ instrument: gauge.instrument, value, attributes }),
    } as unknown as BatchObservableResult;
    for (const callback of this.batchCallbacks) await callback(result);
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

    const gauges = await provider.observe();
    const observed = (instrument: string, name: string, state?: string) =>
      gauges.find(
        (entry) =>
          entry.instrument === instrument &&
          entry.attributes[queue] === name &&
          entry.attributes.state === state,
      )?.value;
    assert.equal(observed('arvo_postgres.queue.dead_lettered', FAIL), 2);
    assert.equal(observed('arvo_postgres.queue.jobs', FAIL, 'failed'), 2);
    assert.equal(observed('arvo_postgres.queue.jobs', OK, 'completed'), 5);
    assert.equal(observed('arvo_postgres.queue.jobs', 'arvo.dead-letter', 'queued'), 2);
    assert.equal(observed('arvo_postgres.queue.jobs', OK, 'queued'), 0);
    assert.equal(observed('arvo_postgres.queue.oldest_age', OK), 0);
  });

  it('publishes the same metrics, kinds and labels to Prometheus and OpenTelemetry', async () => {
    const text = await broker.getMetrics();
    const families = new Map(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => [match[1]!, match[2]!] as const),
    );
    // Prometheus naming: dots to underscores, unit `s` → `_seconds`, counters `_total`.
    const fromOtel = new Map(
      [...provider.instruments].map(([name, { kind, unit }]) => {
        const base = `${name.replaceAll('.', '_')}${unit === 's' ? '_seconds' : ''}`;
        return [kind === 'counter' ? `${base}_total` : base, kind] as const;
      }),
    );
    assert.equal(families.size, 10);
    assert.deepEqual(new Map([...families].sort()), new Map([...fromOtel].sort()));

    // Every value OpenTelemetry got has its Prometheus sample, with the same labels.
    const samples = scrape(text);
    const labelOf: Record<string, string> = {
      'messaging.destination.name': 'queue',
      'arvo_postgres.failure.kind': 'kind',
      state: 'state',
    };
    const key = (family: string, attributes: Attributes) =>
      `${family}{${Object.entries(attributes)
        .map(([name, value]) => `${labelOf[name]}="${value}"`)
        .join(',')}}`;
    const prometheusOf = (instrument: string) =>
      [...fromOtel.keys()].find(
        (family) => family.replace(/_(total|seconds)$/, '') === instrument.replaceAll('.', '_'),
      )!;
    const gauges = await provider.observe();
    assert.ok(gauges.length > 0);
    for (const gauge of gauges) {
      const sampleKey = key(prometheusOf(gauge.instrument), gauge.attributes);
      const value = samples.get(sampleKey);
      if (gauge.instrument === 'arvo_postgres.queue.oldest_age') assert.notEqual(value, undefined, sampleKey);
      else assert.equal(value, gauge.value, sampleKey);
    }
    const counted = new Map<string, number>();
    for (const entry of provider.recorded) {
      if (!provider.instruments.has(entry.instrument)) continue; // another meter's
      const family = prometheusOf(entry.instrument);
      const sampleKey =
        provider.instruments.get(entry.instrument)?.kind === 'histogram'
          ? key(`${family}_count`, entry.attributes)
          : key(family, entry.attributes);
      counted.set(sampleKey, (counted.get(sampleKey) ?? 0) + (family.endsWith('_total') ? entry.value : 1));
    }
    for (const [sampleKey, value] of counted) assert.equal(samples.get(sampleKey), value, sampleKey);
  });

  it('stops observing the queue gauges when the broker stops', async () => {
    await broker.stop({ timeoutMs: 2000 });
    assert.equal(provider.batchCallbacks.size, 0);
    assert.deepEqual(await provider.observe(), []);
    await assert.rejects(broker.getMetrics(), /not started|stopped|getStats/i);
  });

  it('lets go of the queue gauges when start() fails', async () => {
    const unreachable = new PostgresEventBroker({
      connectionString: `postgres://nobody@127.0.0.1:${await freePort()}/none`,
      logger: memoryLogger(),
    });
    assert.equal(provider.batchCallbacks.size, 1, 'a new broker observes the gauges');
    await assert.rejects(unreachable.start(), DatabaseUnavailableError);
    assert.equal(provider.batchCallbacks.size, 0);
  });
});
