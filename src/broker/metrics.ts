import {
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  metrics,
  type ObservableGauge,
} from '@opentelemetry/api';
import type { FailureKind } from './policy';
import type { BrokerQueueStats } from './stats';

/** Upper bounds (seconds) of the handler duration histogram's buckets. */
const HANDLER_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

/**
 * The labels of the broker's metrics: the Prometheus label name and the OpenTelemetry attribute
 * (semantic conventions for messaging name the queue `messaging.destination.name`).
 */
const LABELS = {
  queue: { prometheus: 'queue', otel: 'messaging.destination.name' },
  kind: { prometheus: 'kind', otel: 'arvo_postgres.failure.kind' },
  state: { prometheus: 'state', otel: 'state' },
} as const;

type LabelName = keyof typeof LABELS;
type LabelValues = Partial<Record<LabelName, string>>;

/** One metric of the broker, as both outputs publish it. */
interface MetricDefinition {
  /** OpenTelemetry instrument name; the Prometheus family name derives from it ({@link prometheusName}). */
  name: string;
  kind: 'counter' | 'histogram' | 'gauge';
  /** UCUM unit: `{job}` (a count of jobs), `s`, or `1` (a flag). */
  unit: '{job}' | 's' | '1';
  help: string;
  labels: readonly LabelName[];
}

/**
 * Every metric of the broker, in the order `getMetrics()` prints them. Both the Prometheus text and
 * the OpenTelemetry instruments are built from this table, so they always carry the same metrics.
 */
const BROKER_METRICS = {
  queueJobs: {
    name: 'arvo_postgres.queue.jobs',
    kind: 'gauge',
    unit: '{job}',
    help: 'Jobs retained in a queue by state (exact, from the job table).',
    labels: ['queue', 'state'],
  },
  queueDeadLettered: {
    name: 'arvo_postgres.queue.dead_lettered',
    kind: 'gauge',
    unit: '{job}',
    help: "Copies of a queue's jobs waiting in dead-letter queues.",
    labels: ['queue'],
  },
  queueDeadLetteredRecently: {
    name: 'arvo_postgres.queue.dead_lettered_recent',
    kind: 'gauge',
    unit: '{job}',
    help: "Copies of a queue's jobs dead-lettered in the last 15 minutes and still waiting (alert on > 0).",
    labels: ['queue'],
  },
  queueOldestAge: {
    name: 'arvo_postgres.queue.oldest_age',
    kind: 'gauge',
    unit: 's',
    help: 'Age of the oldest job ready to run (0 when none is waiting).',
    labels: ['queue'],
  },
  queuePaused: {
    name: 'arvo_postgres.queue.paused',
    kind: 'gauge',
    unit: '1',
    help: 'Whether the queue is paused (1) or running (0).',
    labels: ['queue'],
  },
  processed: {
    name: 'arvo_postgres.jobs.processed',
    kind: 'counter',
    unit: '{job}',
    help: 'Jobs handled successfully by this process.',
    labels: ['queue'],
  },
  failed: {
    name: 'arvo_postgres.jobs.failed',
    kind: 'counter',
    unit: '{job}',
    help: 'Failed handling attempts (retried or dead-lettered).',
    labels: ['queue', 'kind'],
  },
  deadLettered: {
    name: 'arvo_postgres.jobs.dead_lettered',
    kind: 'counter',
    unit: '{job}',
    help: 'Jobs moved to a dead-letter queue by this process.',
    labels: ['queue', 'kind'],
  },
  lockContention: {
    name: 'arvo_postgres.lock_contention',
    kind: 'counter',
    unit: '{job}',
    help: 'Jobs rescheduled because the workflow lock was held elsewhere.',
    labels: ['queue'],
  },
  handlerDuration: {
    name: 'arvo_postgres.handler.duration',
    kind: 'histogram',
    unit: 's',
    help: 'Time to handle one job: handler, output enqueue and commit.',
    labels: ['queue'],
  },
} as const satisfies Record<string, MetricDefinition>;

/** Job states of the `arvo_postgres.queue.jobs` gauge. */
const QUEUE_STATES = ['queued', 'active', 'deferred', 'failed', 'completed'] as const;

/**
 * The Prometheus family name of a metric, by Prometheus naming conventions: dots to underscores,
 * the base unit as a suffix (`_seconds` for `s`), `_total` for counters.
 */
function prometheusName(metric: MetricDefinition): string {
  const unit = metric.unit === 's' ? '_seconds' : '';
  return `${metric.name.replaceAll('.', '_')}${unit}${metric.kind === 'counter' ? '_total' : ''}`;
}

function otelAttributes(labels: LabelValues): Attributes {
  const attributes: Attributes = {};
  for (const [label, value] of Object.entries(labels) as Array<[LabelName, string]>) {
    attributes[LABELS[label].otel] = value;
  }
  return attributes;
}

/** One value of a gauge, read from the stats query. */
interface GaugeSample {
  metric: MetricDefinition;
  labels: LabelValues;
  value: number;
}

/** The queue gauges of `stats`: what the Prometheus text prints and the OpenTelemetry gauges observe. */
function queueGaugeSamples(stats: BrokerQueueStats[]): GaugeSample[] {
  const samples: GaugeSample[] = [];
  for (const queue of stats) {
    for (const state of QUEUE_STATES) {
      samples.push({
        metric: BROKER_METRICS.queueJobs,
        labels: { queue: queue.name, state },
        value: queue[state],
      });
    }
    samples.push({
      metric: BROKER_METRICS.queueDeadLettered,
      labels: { queue: queue.name },
      value: queue.deadLettered,
    });
    samples.push({
      metric: BROKER_METRICS.queueDeadLetteredRecently,
      labels: { queue: queue.name },
      value: queue.deadLetteredRecently,
    });
    samples.push({
      metric: BROKER_METRICS.queueOldestAge,
      labels: { queue: queue.name },
      value: (queue.oldestQueuedAgeMs ?? 0) / 1000,
    });
    samples.push({
      metric: BROKER_METRICS.queuePaused,
      labels: { queue: queue.name },
      value: queue.paused ? 1 : 0,
    });
  }
  return samples;
}

/** The in-process values of a counter or histogram, per label values. */
interface Series {
  labels: LabelValues;
  /** Counter: the count. Histogram: the number of observations. */
  count: number;
  /** Histogram only: count per bucket of HANDLER_DURATION_BUCKETS (not cumulative), then +Inf. */
  buckets: number[];
  sum: number;
}

/**
 * The broker's metrics ({@link BROKER_METRICS}), kept two ways: in this process for
 * {@link BrokerMetrics.prometheus} (`broker.getMetrics()`), and as OpenTelemetry instruments of
 * `metrics.getMeter('arvo-postgres')` (no-ops until an SDK `MeterProvider` is registered globally
 * before the broker is created).
 *
 * Counters (per process, since the broker was created): jobs processed, failed attempts, jobs
 * dead-lettered (by failure kind), lock-contention reschedules; a histogram of handler durations
 * (every attempt, including failed ones). The queue gauges are read from the database with the
 * exact stats query (once per collection for all of them), so they cover every process's work.
 */
export class BrokerMetrics {
  readonly #series = new Map<MetricDefinition, Map<string, Series>>();
  readonly #counters = new Map<MetricDefinition, Counter>();
  readonly #histograms = new Map<MetricDefinition, Histogram>();
  readonly #gauges = new Map<MetricDefinition, ObservableGauge>();
  readonly #meter: Meter;
  readonly #observeGauges: BatchObservableCallback;

  /** `readStats` reads the queue gauges for OpenTelemetry (it may throw when stopped). */
  constructor(readStats: () => Promise<BrokerQueueStats[]>) {
    const meter = metrics.getMeter('arvo-postgres');
    this.#meter = meter;
    for (const metric of Object.values(BROKER_METRICS) as MetricDefinition[]) {
      const options = { description: metric.help, unit: metric.unit };
      if (metric.kind === 'counter') {
        this.#counters.set(metric, meter.createCounter(metric.name, options));
      } else if (metric.kind === 'histogram') {
        this.#histograms.set(
          metric,
          meter.createHistogram(metric.name, {
            ...options,
            advice: { explicitBucketBoundaries: [...HANDLER_DURATION_BUCKETS] },
          }),
        );
      } else {
        this.#gauges.set(metric, meter.createObservableGauge(metric.name, options));
      }
    }
    this.#observeGauges = async (result) => {
      let stats: BrokerQueueStats[];
      try {
        stats = await readStats();
      } catch {
        return; // Not started, stopped or unreachable: report nothing rather than zeros.
      }
      for (const { metric, labels, value } of queueGaugeSamples(stats)) {
        result.observe(this.#gauges.get(metric)!, value, otelAttributes(labels));
      }
    };
    meter.addBatchObservableCallback(this.#observeGauges, [...this.#gauges.values()]);
  }

  /** Runs `handle` (one job of `queue`) and records its duration, whatever its outcome. */
  async timeHandler<T>(queue: string, handle: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await handle();
    } finally {
      this.#record(BROKER_METRICS.handlerDuration, { queue }, (performance.now() - started) / 1000);
    }
  }

  /** A job of `queue` was handled and committed. */
  processed(queue: string): void {
    this.#record(BROKER_METRICS.processed, { queue });
  }

  /** An attempt of a job of `queue` failed (retried or dead-lettered). */
  failed(queue: string, kind: FailureKind): void {
    this.#record(BROKER_METRICS.failed, { queue, kind });
  }

  /** A job of `queue` went to its dead-letter queue (see `dead-letter-alerts.ts`). */
  deadLettered(queue: string, kind: FailureKind): void {
    this.#record(BROKER_METRICS.deadLettered, { queue, kind });
  }

  /** A job of `queue` found the workflow lock taken and was rescheduled. */
  lockContention(queue: string): void {
    this.#record(BROKER_METRICS.lockContention, { queue });
  }

  /** Stops feeding the OpenTelemetry queue gauges (the broker stopped). */
  close(): void {
    this.#meter.removeBatchObservableCallback(this.#observeGauges, [...this.#gauges.values()]);
  }

  /** Counts one event of a counter, or records `value` (seconds) in a histogram, in both outputs. */
  #record(metric: MetricDefinition, labels: LabelValues, value = 1): void {
    const key = JSON.stringify(labels);
    const byLabels = this.#series.get(metric) ?? new Map<string, Series>();
    const series = byLabels.get(key) ?? {
      labels,
      count: 0,
      buckets: new Array(HANDLER_DURATION_BUCKETS.length + 1).fill(0),
      sum: 0,
    };
    series.count += 1;
    series.sum += value;
    if (metric.kind === 'histogram') {
      const index = HANDLER_DURATION_BUCKETS.findIndex((bound) => value <= bound);
      const bucket = index === -1 ? HANDLER_DURATION_BUCKETS.length : index;
      series.buckets[bucket] = (series.buckets[bucket] ?? 0) + 1;
      this.#histograms.get(metric)?.record(value, otelAttributes(labels));
    } else {
      this.#counters.get(metric)?.add(value, otelAttributes(labels));
    }
    byLabels.set(key, series);
    this.#series.set(metric, byLabels);
  }

  /** Everything in Prometheus text exposition format (0.0.4), with `stats` as the queue gauges. */
  prometheus(stats: BrokerQueueStats[]): string {
    const gauges = queueGaugeSamples(stats);
    const out: string[] = [];
    for (const metric of Object.values(BROKER_METRICS) as MetricDefinition[]) {
      const name = prometheusName(metric);
      out.push(`# HELP ${name} ${metric.help}`, `# TYPE ${name} ${metric.kind}`);
      if (metric.kind === 'gauge') {
        for (const gauge of gauges) {
          if (gauge.metric === metric) out.push(sample(name, gauge.labels, gauge.value));
        }
        continue;
      }
      for (const series of this.#series.get(metric)?.values() ?? []) {
        if (metric.kind === 'counter') {
          out.push(sample(name, series.labels, series.count));
          continue;
        }
        let cumulative = 0;
        for (const [index, bound] of HANDLER_DURATION_BUCKETS.entries()) {
          cumulative += series.buckets[index] ?? 0;
          out.push(sample(`${name}_bucket`, { ...series.labels, le: String(bound) }, cumulative));
        }
        out.push(sample(`${name}_bucket`, { ...series.labels, le: '+Inf' }, series.count));
        out.push(sample(`${name}_sum`, series.labels, series.sum));
        out.push(sample(`${name}_count`, series.labels, series.count));
      }
    }
    return `${out.join('\n')}\n`;
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sample(name: string, labels: LabelValues & { le?: string }, value: number): string {
  const rendered = Object.entries(labels)
    .map(([key, label]) => {
      const labelName = key === 'le' ? 'le' : LABELS[key as LabelName].prometheus;
      return `${labelName}="${escapeLabel(label)}"`;
    })
    .join(',');
  return `${name}{${rendered}} ${Number.isInteger(value) ? value : Number(value.toFixed(6))}`;
}
