import { InvalidOptionError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { loggerOption } from '../shared/logger';
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
import { CONNECTION_OPTION_KEYS, resolveConnection } from '../shared/pool';
import { resolveCircuitBreakerOptions } from './circuit-breaker';
import type {
  BrokerQueueOptions,
  ResolvedBrokerOptions,
  ResolvedHistoryOptions,
  ResolvedQueueOptions,
  ResolvedWorkerOptions,
} from './types';

export type { BrokerQueueOptions, BrokerWorkerOptions, PostgresEventBrokerOptions } from './types';

export const BROKER_KEYS = [
  ...CONNECTION_OPTION_KEYS,
  'schema',
  'logger',
  'defaults',
  'maxPayloadBytes',
  'history',
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

const QUEUE_KEYS = ['deadLetter', ...Object.keys(QUEUE_RANGES), 'policy', 'partition', 'warningQueueSize'];
export const WORKER_KEYS = [
  ...Object.keys(WORKER_RANGES),
  'concurrency',
  'retryBackoff',
  'pollingIntervalSeconds',
  'notifyPollingIntervalSeconds',
  'subjectConcurrency',
];
export { QUEUE_KEYS };

/** An options object with only `keys`, or undefined when not given. */
function givenObject(value: unknown, option: string, keys: string[]): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  const input = expectObject(value, option);
  expectKnownKeys(input, keys, option);
  return input;
}

/** Validates queue options over `base` (the broker defaults). */
export function resolveQueueOptions(
  value: unknown,
  option: string,
  base: ResolvedQueueOptions,
): ResolvedQueueOptions {
  const input = givenObject(value, option, QUEUE_KEYS);
  if (input === undefined) return base;
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
  const input = givenObject(value, option, WORKER_KEYS);
  if (input === undefined) return defaults;
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
/** The default internal queues: dead-letter, unroutable and domained (never deleted by name alone). */
export const DEFAULT_INTERNAL_QUEUES = [
  DEFAULT_DEAD_LETTER_QUEUE,
  'arvo.unroutable',
  'arvo.domained',
] as const;

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
  const defaults = givenObject(input.defaults, 'defaults', ['queue', 'worker']);
  if (defaults !== undefined) {
    queue = resolveQueueOptions(defaults.queue, 'defaults.queue', queue);
    worker = resolveWorkerOptions(defaults.worker, 'defaults.worker', worker);
  }
  let lockContention = { minDelayMs: 50, maxDelayMs: 250 };
  const given = givenObject(input.lockContention, 'lockContention', ['minDelayMs', 'maxDelayMs']);
  if (given !== undefined) {
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
    history: resolveHistoryOptions(input.history),
    deadLetterQueue,
    unroutableQueue: queueNameOption(input.unroutableQueue, 'unroutableQueue', DEFAULT_INTERNAL_QUEUES[1]),
    domainedQueue: queueNameOption(input.domainedQueue, 'domainedQueue', DEFAULT_INTERNAL_QUEUES[2]),
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

/** The `history` option: `false`, or where the history is kept and what it keeps (see `BrokerHistoryOptions`). */
function resolveHistoryOptions(value: unknown): ResolvedHistoryOptions | null {
  if (value === false) return null;
  const keys = ['schema', 'table', 'payloads', 'maxPayloadBytes', 'maxAgeSeconds'];
  const given = givenObject(value, 'history', keys) ?? {};
  return {
    schema: validateIdentifier(stringOption(given.schema, 'history.schema', 'public'), 'history.schema'),
    table: validateIdentifier(
      stringOption(given.table, 'history.table', 'arvo_event_history'),
      'history.table',
    ),
    payloads: booleanOption(given.payloads, 'history.payloads', false),
    maxPayloadBytes: integerOption(
      given.maxPayloadBytes,
      'history.maxPayloadBytes',
      { min: 0, max: 1024 * 1024 },
      4096,
    ),
    maxAgeSeconds: integerOption(
      given.maxAgeSeconds,
      'history.maxAgeSeconds',
      { min: 1, max: MAX_PG_INTEGER },
      30 * DAY,
    ),
  };
}

/**
 * **Which queues are dead-letter queues**: every queue some queue names as its `dead_letter`, and
 * the names given here. A queue only becomes some queue's `dead_letter` when a queue naming it is
 * created, so a broker's own dead-letter queue is given by name to count from the start. Returns
 * the given names, validated (default `[DEFAULT_DEAD_LETTER_QUEUE]`); the statements of
 * `sql.ts` (`deadLetterQueuesCte`) add the referenced queues.
 */
export function deadLetterQueuesOption(value: unknown, option = 'deadLetterQueues'): string[] {
  const names = value ?? [DEFAULT_DEAD_LETTER_QUEUE];
  if (!Array.isArray(names)) throw new InvalidOptionError(option, 'expected an array of queue names');
  return names.map((name, index) => queueNameOption(name, `${option}[${index}]`));
}
