import { InvalidOptionError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { type Logger, loggerOption } from '../shared/logger';
import {
  booleanOption,
  enumOption,
  expectKnownKeys,
  expectObject,
  integerOption,
  MAX_PG_INTEGER,
  type NumericRange,
  numberOption,
  numericFields,
  stringOption,
} from '../shared/options';
import {
  CONNECTION_OPTION_KEYS,
  type ConnectionOptions,
  type ResolvedConnection,
  resolveConnection,
} from '../shared/pool';
import {
  type CircuitBreakerOptions,
  type ResolvedCircuitBreakerOptions,
  resolveCircuitBreakerOptions,
} from './circuit-breaker';

/** Queue settings (stored on the pg-boss queue row; re-registering with other values updates them). */
export interface BrokerQueueOptions {
  /** Dead-letter queue of this queue; created automatically. Default: the broker's `deadLetterQueue`. */
  deadLetter?: string;
  /** Seconds a job may wait (created/retry) before it is deleted unprocessed. Default 86400 (1 day). */
  retentionSeconds?: number;
  /** Seconds a completed or failed job is kept. Default 3600 (1 hour). */
  deleteAfterSeconds?: number;
  /**
   * pg-boss queue policy (fixed at creation): `standard` (default) or `singleton` (one job active at a
   * time). pg-boss's `short`, `stately` and `exclusive` policies make it skip inserts that collide on a
   * singleton key, which would silently drop accepted events, so the broker does not offer them.
   */
  policy?: 'standard' | 'singleton';
  /** Own job table partition for this queue (fixed at creation). Default false. */
  partition?: boolean;
  /** Warn (logger) when more jobs than this are queued. */
  warningQueueSize?: number;
}

/** Worker settings of a queue. Retry settings are stored on the queue row, like pg-boss does. */
export interface BrokerWorkerOptions {
  /** Jobs fetched per fetch; they run concurrently. Default 10. */
  batchSize?: number;
  /** Fetch loops per queue in this process. Default 2 (so up to `batchSize × localConcurrency` in flight). */
  localConcurrency?: number;
  /**
   * Shorthand for the jobs in flight per process: `2 × concurrency/2` when even, else
   * `1 × concurrency` (fetch loops × batch size). Not together with `batchSize`/`localConcurrency`.
   */
  concurrency?: number;
  /** Retries after the first attempt for retryable failures. Default 3. */
  retryLimit?: number;
  /** Seconds before the first retry. Default 1. */
  retryDelay?: number;
  /** Exponential backoff between retries. Default true. */
  retryBackoff?: boolean;
  /** Maximum seconds between retries. Default 60. */
  retryDelayMax?: number;
  /** Seconds a handler may run before the job is failed and retried. Default 300. */
  expireInSeconds?: number;
  /** Idle poll interval when LISTEN/NOTIFY is unavailable, in seconds (≥ 0.5). Default 1. */
  pollingIntervalSeconds?: number;
  /** Backstop poll while LISTEN/NOTIFY is live, in seconds (≥ polling interval). Default 1 (retries send no NOTIFY). */
  notifyPollingIntervalSeconds?: number;
  /**
   * At most this many jobs of one subject are fetched while others of it are active (pg-boss group
   * concurrency, group = event subject); `0` = no limit. pg-boss checks it inside each fetch, so
   * fetches running at the same moment (other fetch loops, other processes) can race past it: it
   * keeps lock contention rare, the orchestrator's lock keeps it harmless. Default: `1` for
   * orchestrator queues (source `arvo.orc.*`), where replies to one workflow then mostly wait in the
   * queue instead of contending for its lock, and `0` for every other queue. Do not limit a service
   * that receives fan-out calls: those calls share the workflow's subject and would run one by one.
   */
  subjectConcurrency?: number;
}

/** Options of {@link PostgresEventBroker}. */
export interface PostgresEventBrokerOptions extends ConnectionOptions {
  /** Schema of pg-boss's tables. Default `pgboss`. */
  schema?: string;
  /** Console- or pino-like logger. Default: warnings and errors to the console. */
  logger?: Logger;
  /** Defaults for every `register` / `onWorkflowComplete` / internal queue. */
  defaults?: { queue?: BrokerQueueOptions; worker?: BrokerWorkerOptions };
  /** Largest event accepted, as UTF-8 JSON bytes, at `dispatch` and for handler outputs. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Default dead-letter queue. Default `arvo.dead-letter`. */
  deadLetterQueue?: string;
  /** Queue keeping events whose `to` has no queue. Default `arvo.unroutable`. */
  unroutableQueue?: string;
  /** Durable queue of events with a non-null `domain`. Default `arvo.domained`. */
  domainedQueue?: string;
  /** Retention of the dead-letter, unroutable and domained queues in seconds. Default 604800 (7 days). */
  deadLetterRetentionSeconds?: number;
  /** `ExecutionViolation`: dead-letter at once (default) or retry like an infrastructure error. */
  executionViolation?: 'deadLetter' | 'retry';
  /** Delay range for re-running a job that hit lock contention, in ms. Default 50–250, jittered. */
  lockContention?: { minDelayMs?: number; maxDelayMs?: number };
  /** pg-boss maintenance (retention sweep) interval in seconds. Default 120. */
  maintenanceIntervalSeconds?: number;
  /** Producer/consumer spans (no cost without an OpenTelemetry SDK). Default true. */
  telemetry?: boolean;
  /** Connections of pg-boss's own pool (fetching, settling, LISTEN). Default 6. */
  pgBossPoolMax?: number;
  /** Name of this instance in pg-boss's instance registry. */
  instanceName?: string;
  /**
   * Install/migrate pg-boss's schema at `start()`. Default true. `false` for a role without DDL
   * rights: the schema must exist (see SECURITY.md, "Least privilege").
   */
  migrate?: boolean;
  /** Fail-fast behaviour of `dispatch` while PostgreSQL is unreachable (see `CircuitBreaker`). */
  circuitBreaker?: CircuitBreakerOptions;
}

export interface ResolvedQueueOptions {
  deadLetter: string;
  retentionSeconds: number;
  deleteAfterSeconds: number;
  policy: NonNullable<BrokerQueueOptions['policy']>;
  partition: boolean;
  warningQueueSize?: number;
}

/** Worker options after validation; `subjectConcurrency` undefined means the per-queue default. */
export type ResolvedWorkerOptions = Required<
  Omit<BrokerWorkerOptions, 'subjectConcurrency' | 'concurrency'>
> & {
  subjectConcurrency?: number;
};

export interface ResolvedBrokerOptions {
  connection: ResolvedConnection;
  schema: string;
  logger?: Logger;
  queue: ResolvedQueueOptions;
  worker: ResolvedWorkerOptions;
  maxPayloadBytes: number;
  deadLetterQueue: string;
  unroutableQueue: string;
  domainedQueue: string;
  deadLetterRetentionSeconds: number;
  executionViolation: 'deadLetter' | 'retry';
  lockContention: { minDelayMs: number; maxDelayMs: number };
  maintenanceIntervalSeconds: number;
  telemetry: boolean;
  pgBossPoolMax: number;
  instanceName?: string;
  migrate: boolean;
  circuitBreaker: ResolvedCircuitBreakerOptions;
}

const QUEUE_KEYS = [
  'deadLetter',
  'retentionSeconds',
  'deleteAfterSeconds',
  'policy',
  'partition',
  'warningQueueSize',
];
const WORKER_KEYS = [
  'batchSize',
  'localConcurrency',
  'concurrency',
  'retryLimit',
  'retryDelay',
  'retryBackoff',
  'retryDelayMax',
  'expireInSeconds',
  'pollingIntervalSeconds',
  'notifyPollingIntervalSeconds',
  'subjectConcurrency',
];
const BROKER_KEYS = [
  ...CONNECTION_OPTION_KEYS,
  'schema',
  'logger',
  'defaults',
  'maxPayloadBytes',
  'deadLetterQueue',
  'unroutableQueue',
  'domainedQueue',
  'deadLetterRetentionSeconds',
  'executionViolation',
  'lockContention',
  'maintenanceIntervalSeconds',
  'telemetry',
  'pgBossPoolMax',
  'instanceName',
  'migrate',
  'circuitBreaker',
];

const DAY = 86_400;
const QUEUE_NAME = /^[\w.\-/]{1,200}$/;

/** A pg-boss queue name: letters, digits, `_ . - /`. */
export function queueNameOption(value: unknown, option: string, fallback?: string): string {
  const name = fallback === undefined ? stringOption(value, option) : stringOption(value, option, fallback);
  if (name === undefined || !QUEUE_NAME.test(name)) {
    throw new InvalidOptionError(
      option,
      `${JSON.stringify(name)} is not a valid queue name (1-200 letters, digits, '_', '.', '-', '/')`,
    );
  }
  return name;
}

// Every numeric queue and worker option ends up in an `integer` column of pg-boss's queue table.

/** Allowed values of the numeric queue options. */
const QUEUE_RANGES = {
  retentionSeconds: { min: 1, max: MAX_PG_INTEGER },
  deleteAfterSeconds: { min: 0, max: MAX_PG_INTEGER },
} satisfies Partial<Record<keyof BrokerQueueOptions, NumericRange>>;

/** Allowed values of the integer worker options (the polling intervals depend on each other). */
const WORKER_RANGES = {
  batchSize: { min: 1, max: 1000 },
  localConcurrency: { min: 1, max: 100 },
  retryLimit: { min: 0, max: 1000 },
  retryDelay: { min: 0, max: MAX_PG_INTEGER },
  retryDelayMax: { min: 1, max: MAX_PG_INTEGER },
  expireInSeconds: { min: 1, max: DAY },
} satisfies Partial<Record<keyof ResolvedWorkerOptions, NumericRange>>;

/**
 * Refuses `@arvo-tools/postgres`'s `recreateQueue: true` among the options of `register` or
 * `onWorkflowComplete`: recreating a queue deletes the jobs waiting in it, on every deploy that runs it.
 */
export function refuseRecreateQueue(options: Record<string, unknown>): void {
  if (options.recreateQueue === undefined || options.recreateQueue === false) return;
  throw new InvalidOptionError(
    'recreateQueue',
    'refused: recreating a queue deletes every job waiting in it (events accepted but not yet handled would be lost on each deploy). Remove the option: registering again with changed `queue` options updates the queue in place and keeps its jobs (only `policy` and `partition` are fixed at creation)',
  );
}

/** Validates queue options over `base` (the broker defaults). */
export function resolveQueueOptions(
  value: unknown,
  option: string,
  base: ResolvedQueueOptions,
): ResolvedQueueOptions {
  if (value === undefined) return base;
  const input = expectObject(value, option);
  expectKnownKeys(input, QUEUE_KEYS, option);
  const resolved: ResolvedQueueOptions = {
    deadLetter:
      input.deadLetter === undefined
        ? base.deadLetter
        : queueNameOption(input.deadLetter, `${option}.deadLetter`),
    ...numericFields(input, option, QUEUE_RANGES, base),
    policy: enumOption(input.policy, `${option}.policy`, ['standard', 'singleton'] as const, base.policy),
    partition: booleanOption(input.partition, `${option}.partition`, base.partition),
  };
  const warning =
    input.warningQueueSize === undefined
      ? base.warningQueueSize
      : integerOption(
          input.warningQueueSize,
          `${option}.warningQueueSize`,
          { min: 1, max: MAX_PG_INTEGER },
          1,
        );
  if (warning !== undefined) resolved.warningQueueSize = warning;
  return resolved;
}

/** Validates worker options over `defaults` (the broker's). */
export function resolveWorkerOptions(
  value: unknown,
  option: string,
  defaults: ResolvedWorkerOptions,
): ResolvedWorkerOptions {
  if (value === undefined) return defaults;
  const input = expectObject(value, option);
  expectKnownKeys(input, WORKER_KEYS, option);
  let base = defaults;
  if (input.concurrency !== undefined) {
    if (input.batchSize !== undefined || input.localConcurrency !== undefined) {
      throw new InvalidOptionError(
        `${option}.concurrency`,
        'give either concurrency or batchSize/localConcurrency',
      );
    }
    const concurrency = integerOption(input.concurrency, `${option}.concurrency`, { min: 1, max: 2000 }, 1);
    const loops = concurrency % 2 === 0 ? 2 : 1;
    base = { ...defaults, localConcurrency: loops, batchSize: concurrency / loops };
  }
  const polling = numberOption(
    input.pollingIntervalSeconds,
    `${option}.pollingIntervalSeconds`,
    { min: 0.5, max: 3600 },
    base.pollingIntervalSeconds,
  );
  const notifyPolling = numberOption(
    input.notifyPollingIntervalSeconds,
    `${option}.notifyPollingIntervalSeconds`,
    { min: 0.5, max: 3600 },
    Math.max(base.notifyPollingIntervalSeconds, polling),
  );
  if (notifyPolling < polling) {
    throw new InvalidOptionError(
      `${option}.notifyPollingIntervalSeconds`,
      `must be at least pollingIntervalSeconds (${polling})`,
    );
  }
  return {
    ...numericFields(input, option, WORKER_RANGES, base),
    retryBackoff: booleanOption(input.retryBackoff, `${option}.retryBackoff`, base.retryBackoff),
    pollingIntervalSeconds: polling,
    notifyPollingIntervalSeconds: notifyPolling,
    ...(input.subjectConcurrency === undefined
      ? base.subjectConcurrency === undefined
        ? {}
        : { subjectConcurrency: base.subjectConcurrency }
      : {
          subjectConcurrency: integerOption(
            input.subjectConcurrency,
            `${option}.subjectConcurrency`,
            { min: 0, max: 1000 },
            0,
          ),
        }),
  };
}

/** The dead-letter queue a broker uses unless told otherwise (its `deadLetterQueue` option). */
export const DEFAULT_DEAD_LETTER_QUEUE = 'arvo.dead-letter';

const QUEUE_DEFAULTS: ResolvedQueueOptions = {
  deadLetter: DEFAULT_DEAD_LETTER_QUEUE,
  retentionSeconds: DAY,
  deleteAfterSeconds: 3600,
  policy: 'standard',
  partition: false,
};

const WORKER_DEFAULTS: ResolvedWorkerOptions = {
  batchSize: 10,
  localConcurrency: 2,
  retryLimit: 3,
  retryDelay: 1,
  retryBackoff: true,
  retryDelayMax: 60,
  expireInSeconds: 300,
  pollingIntervalSeconds: 1,
  notifyPollingIntervalSeconds: 1,
};

/** Validates the constructor options; every problem is an {@link InvalidOptionError} naming the option. */
export function resolveBrokerOptions(value: unknown): ResolvedBrokerOptions {
  const input = expectObject(value, 'options');
  expectKnownKeys(input, BROKER_KEYS, '');
  const connection = resolveConnection(input);
  const logger = input.logger === undefined ? undefined : loggerOption(input.logger, 'logger');
  const deadLetterQueue = queueNameOption(
    input.deadLetterQueue,
    'deadLetterQueue',
    QUEUE_DEFAULTS.deadLetter,
  );
  let queue = { ...QUEUE_DEFAULTS, deadLetter: deadLetterQueue };
  let worker = WORKER_DEFAULTS;
  if (input.defaults !== undefined) {
    const defaults = expectObject(input.defaults, 'defaults');
    expectKnownKeys(defaults, ['queue', 'worker'], 'defaults');
    queue = resolveQueueOptions(defaults.queue, 'defaults.queue', queue);
    worker = resolveWorkerOptions(defaults.worker, 'defaults.worker', worker);
  }
  let lockContention = { minDelayMs: 50, maxDelayMs: 250 };
  if (input.lockContention !== undefined) {
    const given = expectObject(input.lockContention, 'lockContention');
    expectKnownKeys(given, ['minDelayMs', 'maxDelayMs'], 'lockContention');
    const minDelayMs = integerOption(
      given.minDelayMs,
      'lockContention.minDelayMs',
      { min: 0, max: 60_000 },
      50,
    );
    const maxDelayMs = integerOption(
      given.maxDelayMs,
      'lockContention.maxDelayMs',
      { min: minDelayMs, max: 60_000 },
      Math.max(250, minDelayMs),
    );
    lockContention = { minDelayMs, maxDelayMs };
  }
  const resolved: ResolvedBrokerOptions = {
    connection,
    schema: validateIdentifier(input.schema ?? 'pgboss', 'schema'),
    queue,
    worker,
    maxPayloadBytes: integerOption(
      input.maxPayloadBytes,
      'maxPayloadBytes',
      { min: 256, max: 64 * 1024 * 1024 },
      1024 * 1024,
    ),
    deadLetterQueue,
    unroutableQueue: queueNameOption(input.unroutableQueue, 'unroutableQueue', 'arvo.unroutable'),
    domainedQueue: queueNameOption(input.domainedQueue, 'domainedQueue', 'arvo.domained'),
    deadLetterRetentionSeconds: integerOption(
      input.deadLetterRetentionSeconds,
      'deadLetterRetentionSeconds',
      { min: 1, max: MAX_PG_INTEGER },
      7 * DAY,
    ),
    executionViolation: enumOption(
      input.executionViolation,
      'executionViolation',
      ['deadLetter', 'retry'] as const,
      'deadLetter',
    ),
    lockContention,
    maintenanceIntervalSeconds: integerOption(
      input.maintenanceIntervalSeconds,
      'maintenanceIntervalSeconds',
      { min: 1, max: DAY },
      120,
    ),
    telemetry: booleanOption(input.telemetry, 'telemetry', true),
    pgBossPoolMax: integerOption(input.pgBossPoolMax, 'pgBossPoolMax', { min: 2, max: 1000 }, 6),
    migrate: booleanOption(input.migrate, 'migrate', true),
    circuitBreaker: resolveCircuitBreakerOptions(input.circuitBreaker, 'circuitBreaker'),
  };
  if (logger) resolved.logger = logger;
  const instanceName = stringOption(input.instanceName, 'instanceName');
  if (instanceName !== undefined) resolved.instanceName = instanceName;
  return resolved;
}
