import {
  type Attributes,
  type Counter,
  type Histogram,
  type Meter,
  metrics,
  type ObservableCallback,
  type ObservableGauge,
} from '@opentelemetry/api';
import type pg from 'pg';
import type { FailureKind } from './policy';
import { queueStatsSql } from './sql';

/** Exact counts of one queue (see `PostgresEventBroker.getStats`). */
export interface BrokerQueueStats {
  name: string;
  /** Waiting to run (created or retry), including `deferred`. */
  queued: number;
  active: number;
  /** Waiting with a start time in the future (retry backoff, lock-contention reschedule). */
  deferred: number;
  /** Terminally failed rows still retained (their dead-letter copies are in `deadLettered` of this queue). */
  failed: number;
  /** Finished rows still retained (completed; also cancelled through pg-boss directly). */
  completed: number;
  /** Every retained row. */
  total: number;
  /** Copies of this queue's jobs waiting in dead-letter queues (what `DeadLetters.list` returns). */
  deadLettered: number;
  /** Age of the oldest job ready to run, or null when none is ready. */
  oldestQueuedAgeMs: number | null;
}

/**
 * Exact per-queue counts in one statement (`queueStatsSql`): `names` in that order, and with `all`
 * every other queue of the database after them. Used by the broker's `getStats`, its metrics and the
 * CLI, which needs no running broker.
 */
export async function queryQueueStats(
  db: Pick<pg.Pool, 'query'>,
  schema: string,
  names: string[],
  all: boolean,
): Promise<BrokerQueueStats[]> {
  const { rows } = await db.query(queueStatsSql(schema), [names, all]);
  return rows.map((row) => ({
    name: row.name,
    queued: row.queued,
    active: row.active,
    deferred: row.deferred,
    failed: row.failed,
    completed: row.completed,
    total: row.total,
    deadLettered: row.dead_lettered,
    oldestQueuedAgeMs: row.oldest_queued_age_ms,
  }));
}

/** Upper bounds (seconds) of the handler duration histogram's buckets. */
export const HANDLER_DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
] as const;

/** OpenTelemetry attribute naming the queue (semantic conventions for messaging). */
const QUEUE_ATTRIBUTE = 'messaging.destination.name';
const KIND_ATTRIBUTE = 'arvo_postgres.failure.kind';

interface DurationSeries {
  /** Count per bucket of HANDLER_DURATION_BUCKETS (not cumulative), then +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

/** A counter keyed by label values. */
class LabelledCounter {
  readonly values = new Map<string, { labels: Record<string, string>; value: number }>();

  add(labels: Record<string, string>): void {
    const key = JSON.stringify(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += 1;
    this.values.set(key, entry);
  }
}

/**
 * The broker's metrics, kept two ways: in this process for {@link BrokerMetrics.prometheus}
 * (`broker.getMetrics()`), and as OpenTelemetry instruments of `metrics.getMeter('arvo-postgres')`
 * (no-ops until an SDK `MeterProvider` is registered globally before the broker is created).
 *
 * Counters (per process, since the broker was created): jobs processed, failed attempts, jobs
 * dead-lettered (by failure kind), lock-contention reschedules; a histogram of handler durations
 * (every attempt, including failed ones). Queue depth is a gauge read from the database with the
 * exact stats query, so it covers every process's work.
 */
export class BrokerMetrics {
  readonly #processed = new LabelledCounter();
  readonly #failed = new LabelledCounter();
  readonly #deadLettered = new LabelledCounter();
  readonly #lockContention = new LabelledCounter();
  readonly #durations = new Map<string, DurationSeries>();
  readonly #otel: {
    processed: Counter;
    failed: Counter;
    deadLettered: Counter;
    lockContention: Counter;
    duration: Histogram;
    depth: ObservableGauge;
    depthCallback: ObservableCallback;
  };

  /** `readStats` reads the queue depths for the OpenTelemetry gauge (it may throw when stopped). */
  constructor(
    readStats: () => Promise<BrokerQueueStats[]>,
    meter: Meter = metrics.getMeter('arvo-postgres'),
  ) {
    const depthCallback: ObservableCallback = async (result) => {
      let stats: BrokerQueueStats[];
      try {
        stats = await readStats();
      } catch {
        return; // Not started, stopped or unreachable: report nothing rather than zeros.
      }
      for (const queue of stats) {
        for (const state of ['queued', 'active', 'deferred', 'failed'] as const) {
          result.observe(queue[state], { [QUEUE_ATTRIBUTE]: queue.name, state });
        }
        result.observe(queue.deadLettered, { [QUEUE_ATTRIBUTE]: queue.name, state: 'dead_lettered' });
      }
    };
    const depth = meter.createObservableGauge('arvo_postgres.queue.depth', {
      description: 'Jobs in a queue by state (exact, from the job table)',
      unit: '{job}',
    });
    depth.addCallback(depthCallback);
    this.#otel = {
      processed: meter.createCounter('arvo_postgres.jobs.processed', {
        description: 'Jobs handled successfully by this process',
        unit: '{job}',
      }),
      failed: meter.createCounter('arvo_postgres.jobs.failed', {
        description: 'Failed handling attempts (retried or dead-lettered)',
        unit: '{job}',
      }),
      deadLettered: meter.createCounter('arvo_postgres.jobs.dead_lettered', {
        description: 'Jobs moved to a dead-letter queue by this process',
        unit: '{job}',
      }),
      lockContention: meter.createCounter('arvo_postgres.lock_contention', {
        description: 'Jobs rescheduled because the workflow lock was held elsewhere',
        unit: '{job}',
      }),
      duration: meter.createHistogram('arvo_postgres.handler.duration', {
        description: 'Time to handle one job: handler, output enqueue and commit',
        unit: 's',
        advice: { explicitBucketBoundaries: [...HANDLER_DURATION_BUCKETS] },
      }),
      depth,
      depthCallback,
    };
  }

  /** Runs `handle` (one job of `queue`) and records its duration, whatever its outcome. */
  async timeHandler<T>(queue: string, handle: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await handle();
    } finally {
      this.#recordDuration(queue, (performance.now() - started) / 1000);
    }
  }

  /** A job of `queue` was handled and committed. */
  processed(queue: string): void {
    this.#processed.add({ queue });
    this.#otel.processed.add(1, { [QUEUE_ATTRIBUTE]: queue });
  }

  /** An attempt of a job of `queue` failed; `deadLettered` when it went to the dead-letter queue. */
  failed(queue: string, kind: FailureKind, deadLettered: boolean): void {
    const attributes: Attributes = { [QUEUE_ATTRIBUTE]: queue, [KIND_ATTRIBUTE]: kind };
    this.#failed.add({ queue, kind });
    this.#otel.failed.add(1, attributes);
    if (deadLettered) {
      this.#deadLettered.add({ queue, kind });
      this.#otel.deadLettered.add(1, attributes);
    }
  }

  /** A job of `queue` found the workflow lock taken and was rescheduled. */
  lockContention(queue: string): void {
    this.#lockContention.add({ queue });
    this.#otel.lockContention.add(1, { [QUEUE_ATTRIBUTE]: queue });
  }

  /** Stops feeding the OpenTelemetry queue-depth gauge (the broker stopped). */
  close(): void {
    this.#otel.depth.removeCallback(this.#otel.depthCallback);
  }

  #recordDuration(queue: string, seconds: number): void {
    const series = this.#durations.get(queue) ?? {
      buckets: new Array(HANDLER_DURATION_BUCKETS.length + 1).fill(0),
      sum: 0,
      count: 0,
    };
    const index = HANDLER_DURATION_BUCKETS.findIndex((bound) => seconds <= bound);
    const bucket = index === -1 ? HANDLER_DURATION_BUCKETS.length : index;
    series.buckets[bucket] = (series.buckets[bucket] ?? 0) + 1;
    series.sum += seconds;
    series.count += 1;
    this.#durations.set(queue, series);
    this.#otel.duration.record(seconds, { [QUEUE_ATTRIBUTE]: queue });
  }

  /** Everything in Prometheus text exposition format (0.0.4), with `stats` as the queue gauges. */
  prometheus(stats: BrokerQueueStats[]): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    family(
      'arvo_postgres_queue_jobs',
      'gauge',
      'Jobs retained in a queue by state (exact, from the job table).',
    );
    for (const queue of stats) {
      for (const state of ['queued', 'active', 'deferred', 'failed', 'completed'] as const) {
        out.push(sample('arvo_postgres_queue_jobs', { queue: queue.name, state }, queue[state]));
      }
    }
    family(
      'arvo_postgres_queue_dead_lettered',
      'gauge',
      "Copies of a queue's jobs waiting in dead-letter queues.",
    );
    for (const queue of stats) {
      out.push(sample('arvo_postgres_queue_dead_lettered', { queue: queue.name }, queue.deadLettered));
    }
    family(
      'arvo_postgres_queue_oldest_age_seconds',
      'gauge',
      'Age of the oldest job ready to run (0 when none is waiting).',
    );
    for (const queue of stats) {
      out.push(
        sample(
          'arvo_postgres_queue_oldest_age_seconds',
          { queue: queue.name },
          (queue.oldestQueuedAgeMs ?? 0) / 1000,
        ),
      );
    }
    const counter = (name: string, help: string, values: LabelledCounter) => {
      family(name, 'counter', help);
      for (const { labels, value } of values.values.values()) out.push(sample(name, labels, value));
    };
    counter(
      'arvo_postgres_jobs_processed_total',
      'Jobs handled successfully by this process.',
      this.#processed,
    );
    counter(
      'arvo_postgres_jobs_failed_total',
      'Failed handling attempts (retried or dead-lettered).',
      this.#failed,
    );
    counter(
      'arvo_postgres_jobs_dead_lettered_total',
      'Jobs moved to a dead-letter queue by this process.',
      this.#deadLettered,
    );
    counter(
      'arvo_postgres_lock_contention_total',
      'Jobs rescheduled because the workflow lock was held elsewhere.',
      this.#lockContention,
    );
    family(
      'arvo_postgres_handler_duration_seconds',
      'histogram',
      'Time to handle one job: handler, output enqueue and commit.',
    );
    for (const [queue, series] of this.#durations) {
      let cumulative = 0;
      for (const [index, bound] of HANDLER_DURATION_BUCKETS.entries()) {
        cumulative += series.buckets[index] ?? 0;
        out.push(
          sample('arvo_postgres_handler_duration_seconds_bucket', { queue, le: String(bound) }, cumulative),
        );
      }
      out.push(sample('arvo_postgres_handler_duration_seconds_bucket', { queue, le: '+Inf' }, series.count));
      out.push(sample('arvo_postgres_handler_duration_seconds_sum', { queue }, series.sum));
      out.push(sample('arvo_postgres_handler_duration_seconds_count', { queue }, series.count));
    }
    return `${out.join('\n')}\n`;
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sample(name: string, labels: Record<string, string>, value: number): string {
  const rendered = Object.entries(labels)
    .map(([key, label]) => `${key}="${escapeLabel(label)}"`)
    .join(',');
  return `${name}{${rendered}} ${Number.isInteger(value) ? value : Number(value.toFixed(6))}`;
}
