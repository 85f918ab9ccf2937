import { InvalidOptionError } from '../shared/errors';
import { LOGGER_OPTION } from '../shared/logger';
import {
  expectObject,
  finite,
  flag,
  identifier,
  integer,
  MAX_PG_INTEGER,
  nested,
  type OptionTable,
  type OptionValues,
  oneOf,
  option,
  resolveOptions,
  stringOption,
  text,
} from '../shared/options';
import { CONNECTION_OPTION_KEYS, CONNECTION_OPTIONS, resolveConnection } from '../shared/pool';
import { CIRCUIT_BREAKER_OPTIONS } from './circuit-breaker';
import type {
  BrokerHistoryOptions,
  BrokerQueueOptions,
  BrokerWorkerOptions,
  PostgresEventBrokerOptions,
  ResolvedBrokerOptions,
  ResolvedQueueOptions,
  ResolvedWorkerOptions,
} from './types';

export type { BrokerQueueOptions, BrokerWorkerOptions, PostgresEventBrokerOptions } from './types';

const DAY = 86_400;
const QUEUE_NAME = /^[\w.\-/]{1,200}$/;

/** A pg-boss queue name: letters, digits, `_ . - /`. */
export function queueNameOption(value: unknown, option: string): string {
  const name = stringOption(value, option);
  if (name === undefined || !QUEUE_NAME.test(name)) {
    throw new InvalidOptionError(
      option,
      `${JSON.stringify(name)} is not a valid queue name (1-200 letters, digits, '_', '.', '-', '/')`,
    );
  }
  return name;
}

// Every numeric queue and worker option ends up in an `integer` column of pg-boss's queue table.

/** The dead-letter queue a broker uses unless told otherwise (its `deadLetterQueue` option). */
export const DEFAULT_DEAD_LETTER_QUEUE = 'arvo.dead-letter';
/** The queue of template schedules' ticks (schedules.ts); factory schedules tick in `<it>.<name>`. */
export const SCHEDULES_QUEUE = 'arvo.schedules';
/** The default internal queues: dead-letter, unroutable, domained, schedules (never deleted by name alone). */
export const DEFAULT_INTERNAL_QUEUES = [
  DEFAULT_DEAD_LETTER_QUEUE,
  'arvo.unroutable',
  'arvo.domained',
  SCHEDULES_QUEUE,
] as const;

/** A queue-name option. */
const queueName = (fallback: string) => option((value, at) => queueNameOption(value, at), fallback);

/** The checks and defaults of {@link BrokerQueueOptions}. */
export const QUEUE_OPTIONS = {
  deadLetter: queueName(DEFAULT_DEAD_LETTER_QUEUE),
  retentionSeconds: integer({ min: 1, max: MAX_PG_INTEGER }, DAY),
  deleteAfterSeconds: integer({ min: 0, max: MAX_PG_INTEGER }, 3600),
  policy: oneOf(['standard', 'singleton'], 'standard'),
  partition: flag(false),
  warningQueueSize: integer({ min: 1, max: MAX_PG_INTEGER }),
} satisfies OptionTable<BrokerQueueOptions>;

/** The checks and defaults of {@link BrokerWorkerOptions} (`refineWorker` adds the rules between them). */
export const WORKER_OPTIONS = {
  batchSize: integer({ min: 1, max: 1000 }, 10),
  localConcurrency: integer({ min: 1, max: 100 }, 2),
  concurrency: integer({ min: 1, max: 2000 }),
  retryLimit: integer({ min: 0, max: 1000 }, 3),
  retryDelay: integer({ min: 0, max: MAX_PG_INTEGER }, 1),
  retryBackoff: flag(true),
  retryDelayMax: integer({ min: 1, max: MAX_PG_INTEGER }, 60),
  expireInSeconds: integer({ min: 1, max: DAY }, 300),
  pollingIntervalSeconds: finite({ min: 0.5, max: 3600 }, 1),
  notifyPollingIntervalSeconds: finite({ min: 0.5, max: 3600 }, 1),
  subjectConcurrency: integer({ min: 0, max: 1000 }),
} satisfies OptionTable<BrokerWorkerOptions>;

/**
 * The rules between worker options: `concurrency` stands for `batchSize` × `localConcurrency`, and the
 * backstop poll while NOTIFY is live is never more frequent than the poll without it.
 */
function refineWorker(
  { concurrency, ...worker }: OptionValues<typeof WORKER_OPTIONS>,
  option: string,
  given: Record<string, unknown>,
): ResolvedWorkerOptions {
  const at = (key: string) => (option ? `${option}.${key}` : key);
  if (concurrency !== undefined) {
    if (given.batchSize !== undefined || given.localConcurrency !== undefined) {
      throw new InvalidOptionError(
        at('concurrency'),
        'give either concurrency or batchSize/localConcurrency',
      );
    }
    worker.localConcurrency = concurrency % 2 === 0 ? 2 : 1;
    worker.batchSize = concurrency / worker.localConcurrency;
  }
  const polling = worker.pollingIntervalSeconds;
  if (given.notifyPollingIntervalSeconds === undefined) {
    worker.notifyPollingIntervalSeconds = Math.max(worker.notifyPollingIntervalSeconds, polling);
  } else if (worker.notifyPollingIntervalSeconds < polling) {
    throw new InvalidOptionError(
      at('notifyPollingIntervalSeconds'),
      `must be at least pollingIntervalSeconds (${polling})`,
    );
  }
  return worker;
}

/** Validates queue options over `base` (the broker defaults). */
export function resolveQueueOptions(
  value: unknown,
  option: string,
  base: ResolvedQueueOptions,
): ResolvedQueueOptions {
  return resolveOptions(QUEUE_OPTIONS, value, option, base);
}

/** Validates worker options over `defaults` (the broker's). */
export function resolveWorkerOptions(
  value: unknown,
  option: string,
  defaults: ResolvedWorkerOptions,
): ResolvedWorkerOptions {
  if (value === undefined) return defaults;
  const given = expectObject(value, option);
  return refineWorker(resolveOptions(WORKER_OPTIONS, given, option, defaults), option, given);
}

/** The checks and defaults of {@link BrokerHistoryOptions}. */
export const HISTORY_OPTIONS = {
  schema: identifier('public'),
  table: identifier('arvo_event_history'),
  payloads: flag(false),
  maxPayloadBytes: integer({ min: 0, max: 1024 * 1024 }, 4096),
  maxAgeSeconds: integer({ min: 1, max: MAX_PG_INTEGER }, 30 * DAY),
} satisfies OptionTable<BrokerHistoryOptions>;

const HISTORY = nested(HISTORY_OPTIONS);

/** The checks and defaults of {@link PostgresEventBrokerOptions}. */
export const BROKER_OPTIONS = {
  ...CONNECTION_OPTIONS,
  schema: identifier('pgboss'),
  logger: LOGGER_OPTION,
  defaults: nested({ queue: nested(QUEUE_OPTIONS), worker: nested(WORKER_OPTIONS, refineWorker) }),
  maxPayloadBytes: integer({ min: 256, max: 64 * 1024 * 1024 }, 1024 * 1024),
  history: { ...HISTORY, check: (value, at) => (value === false ? false : HISTORY.check(value, at)) },
  deadLetterQueue: queueName(DEFAULT_DEAD_LETTER_QUEUE),
  unroutableQueue: queueName(DEFAULT_INTERNAL_QUEUES[1]),
  domainedQueue: queueName(DEFAULT_INTERNAL_QUEUES[2]),
  deadLetterRetentionSeconds: integer({ min: 1, max: MAX_PG_INTEGER }, 7 * DAY),
  executionViolation: oneOf(['deadLetter', 'retry'], 'deadLetter'),
  lockContention: nested(
    { minDelayMs: integer({ min: 0, max: 60_000 }, 50), maxDelayMs: integer({ min: 0, max: 60_000 }, 250) },
    ({ minDelayMs, maxDelayMs }, option, given) => {
      if (given.maxDelayMs === undefined) return { minDelayMs, maxDelayMs: Math.max(maxDelayMs, minDelayMs) };
      if (maxDelayMs < minDelayMs) {
        throw new InvalidOptionError(`${option}.maxDelayMs`, `must be at least minDelayMs (${minDelayMs})`);
      }
      return { minDelayMs, maxDelayMs };
    },
  ),
  maintenanceIntervalSeconds: integer({ min: 1, max: DAY }, 120),
  telemetry: flag(true),
  pgBossPoolMax: integer({ min: 2, max: 1000 }, 6),
  instanceName: text(),
  migrate: flag(true),
  circuitBreaker: nested(CIRCUIT_BREAKER_OPTIONS),
} satisfies OptionTable<PostgresEventBrokerOptions>;

/** Validates the constructor options; every problem is an {@link InvalidOptionError} naming the option. */
export function resolveBrokerOptions(value: unknown): ResolvedBrokerOptions {
  const input = expectObject(value, 'options');
  const { defaults, history, ...options } = resolveOptions(BROKER_OPTIONS, input, '');
  // A queue's dead-letter queue defaults to the broker's, unless `defaults.queue` names another.
  const givenQueue = (input.defaults as { queue?: { deadLetter?: unknown } } | undefined)?.queue;
  const deadLetter =
    givenQueue?.deadLetter === undefined ? options.deadLetterQueue : defaults.queue.deadLetter;
  const resolved: ResolvedBrokerOptions = {
    ...withoutKeys(options, CONNECTION_OPTION_KEYS),
    connection: resolveConnection(input),
    queue: { ...defaults.queue, deadLetter },
    worker: defaults.worker,
    history: history === false ? null : history,
  };
  return resolved;
}

/** `values` without `keys`. */
function withoutKeys<T extends object, K extends keyof T>(values: T, keys: readonly K[]): Omit<T, K> {
  const rest = { ...values };
  for (const key of keys) delete rest[key];
  return rest;
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
