import { InvalidOptionError } from '../shared/errors';
import {
  expectKnownKeys,
  expectObject,
  flag,
  integerOption,
  MAX_TIMER_MS,
  type OptionTable,
  option,
  resolveOptions,
} from '../shared/options';
import { type Delivery, PRIORITY_OPTION, priorityValue, startAfterValue, withoutUndefined } from './delivery';
import { StateOutsideBrokerTransactionError } from './errors';
import { queueNameOption, resolveQueueOptions, resolveWorkerOptions } from './options';
import type { StopOnSignalsOptions } from './shutdown';
import type {
  RegisterOptions,
  Registration,
  ResolvedBrokerOptions,
  ResolvedQueueOptions,
  ResolvedWorkerOptions,
} from './types';

// The checks of the broker's per-call arguments (its construction options are in options.ts).

/**
 * `@arvo-tools/postgres`'s `recreateQueue`, refused unless `false` among the options of `register` or
 * `onWorkflowComplete`: recreating a queue deletes the jobs waiting in it, on every deploy that runs it.
 */
const RECREATE_QUEUE_OPTION = option((value, at): false => {
  if (value === false) return false;
  throw new InvalidOptionError(
    at,
    'refused: recreating a queue deletes every job waiting in it (events accepted but not yet handled would be lost on each deploy). Remove the option: registering again with changed `queue` options updates the queue in place and keeps its jobs (only `policy` and `partition` are fixed at creation)',
  );
});

/** `register`'s handler: an object with `execute`; returns its queue (`source`). */
export function handlerOption(handler: unknown): string {
  if (
    typeof handler !== 'object' ||
    handler === null ||
    typeof (handler as { execute?: unknown }).execute !== 'function'
  ) {
    throw new InvalidOptionError('handler', 'expected an Arvo event handler (with `source` and `execute`)');
  }
  return queueNameOption((handler as { source?: unknown }).source, 'handler.source');
}

/** The checks of {@link RegisterOptions}: queue and worker options over the broker's `defaults`. */
function registerOptionTable(defaults: ResolvedBrokerOptions) {
  return {
    queue: option((value, at) => resolveQueueOptions(value, at, defaults.queue), defaults.queue),
    worker: option((value, at) => resolveWorkerOptions(value, at, defaults.worker), defaults.worker),
    allowStateOutsideBrokerTransaction: flag(false),
    priority: PRIORITY_OPTION,
    recreateQueue: RECREATE_QUEUE_OPTION,
  } satisfies OptionTable<RegisterOptions>;
}

/** `register`/`onWorkflowComplete` options, validated. */
export function registerOptions(
  options: unknown,
  defaults: ResolvedBrokerOptions,
): {
  queueOptions: ResolvedQueueOptions;
  workerOptions: ResolvedWorkerOptions;
  defaultPriority: number | null;
  allowStateOutsideBrokerTransaction: boolean;
} {
  const { queue, worker, priority, allowStateOutsideBrokerTransaction } = resolveOptions(
    registerOptionTable(defaults),
    expectObject(options, 'options'),
    '',
  );
  return {
    queueOptions: queue,
    workerOptions: worker,
    defaultPriority: priority ?? null,
    allowStateOutsideBrokerTransaction,
  };
}

/** Most events one `dispatchMany` call takes: one statement per destination queue must stay modest. */
export const MAX_DISPATCH_BATCH = 1000;

/** `dispatch`/`dispatchMany` options: when and how urgently the jobs run (see `delivery.ts`). */
export function dispatchOptions(options: unknown): Delivery {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, ['startAfter', 'priority'], 'options');
  const startAfter = startAfterValue(given.startAfter, 'startAfter');
  return withoutUndefined({ startAfter, priority: priorityValue(given.priority, 'priority') });
}

/** `dispatchMany`'s events: an array of 1 to {@link MAX_DISPATCH_BATCH} (each checked by the codec). */
export function dispatchBatchOption(events: unknown): unknown[] {
  if (!Array.isArray(events) || events.length === 0 || events.length > MAX_DISPATCH_BATCH) {
    throw new InvalidOptionError('events', `expected an array of 1 to ${MAX_DISPATCH_BATCH} events`);
  }
  return events;
}

/** A listener argument (`onWorkflowComplete`, `onDomainedEvent`, `onHandlerNotFound`). */
export function listenerOption<T>(listener: T, message = 'expected a function'): T {
  if (typeof listener !== 'function') throw new InvalidOptionError('listener', message);
  return listener;
}

/** A call's `{ timeoutMs }` (no other key): milliseconds from `min`, or `fallback` (`resolve`, `health`). */
export function timeoutMsOption(options: unknown, fallback: number, min = 1): number {
  let timeoutMs: unknown;
  if (options !== undefined) {
    const given = expectObject(options, 'options');
    expectKnownKeys(given, ['timeoutMs'], 'options');
    timeoutMs = given.timeoutMs;
  }
  return integerOption(timeoutMs, 'timeoutMs', { min, max: MAX_TIMER_MS }, fallback);
}

/** `stop()`'s `timeoutMs` (default 30 s; pg-boss waits at least one second). */
export function stopTimeoutOption(options: unknown): number {
  return Math.max(1000, timeoutMsOption(options, 30_000, 0));
}

/** The checks and defaults of {@link StopOnSignalsOptions}. */
const STOP_ON_SIGNALS_OPTIONS = {
  signals: option(
    (value, at): NodeJS.Signals[] => {
      if (!Array.isArray(value) || value.length === 0 || value.some((s) => !/^SIG[A-Z0-9]+$/.test(s))) {
        throw new InvalidOptionError(at, "expected a non-empty array of signal names ('SIGTERM', …)");
      }
      return value;
    },
    ['SIGTERM', 'SIGINT'],
  ),
  timeoutMs: option((value) => stopTimeoutOption({ timeoutMs: value }), stopTimeoutOption(undefined)),
  exit: flag(true),
} satisfies OptionTable<StopOnSignalsOptions>;

/** `stopOnSignals()`'s options, validated. */
export function stopOnSignalsOptions(value: unknown): Required<StopOnSignalsOptions> {
  return resolveOptions(STOP_ON_SIGNALS_OPTIONS, value, '');
}

/** `getStats()`'s `queues`: names (validated), `'all'`, or undefined for the broker's own. */
export function statsQueuesOption(options: unknown): string[] | 'all' | undefined {
  const given = expectObject(options, 'options').queues;
  if (given === undefined || given === 'all') return given;
  if (!Array.isArray(given))
    throw new InvalidOptionError('queues', "expected an array of queue names or 'all'");
  return given.map((name, index) => queueNameOption(name, `queues[${index}]`));
}

/** `deleteQueue`'s `force` (default false). */
export function forceOption(options: unknown): boolean {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, ['force'], 'options');
  if (given.force !== undefined && typeof given.force !== 'boolean') {
    throw new InvalidOptionError('force', 'expected a boolean');
  }
  return given.force === true;
}

/** A dead-letter filter argument (`listDeadLetters`, `redriveDeadLetters`): an object. */
export function filterOption<T>(filter: T): T {
  return expectObject(filter, 'filter') as T;
}

/** `onWorkflowComplete` adopting the completion queue `resolve()` created with the defaults: refuses options. */
export function adoptedCompletionOptions(queue: string, options: unknown): void {
  if (options !== undefined) {
    throw new InvalidOptionError(
      'options',
      `the completion queue ${JSON.stringify(queue)} was created by resolve() with the defaults; call onWorkflowComplete before resolve() to give it options`,
    );
  }
}

/**
 * Refuses an orchestrator whose memory cannot join the job's transaction (see
 * `allowStateOutsideBrokerTransaction`): a `PostgresMachineMemory` joins it exactly when it is on
 * the broker's database (`databaseId`); any other memory never does. Checked once connected.
 */
export function assertStateJoinsTransaction(registration: Registration, databaseId: string): void {
  const memory = registration.handler?.memory;
  if (memory === undefined || memory === null || registration.allowStateOutsideBrokerTransaction) return;
  const memoryDatabaseId = (memory as { databaseId?: unknown }).databaseId;
  if (typeof memoryDatabaseId !== 'string') {
    throw new StateOutsideBrokerTransactionError(
      registration.queue,
      'in a memory that is not a PostgresMachineMemory',
    );
  }
  if (memoryDatabaseId !== databaseId) {
    throw new StateOutsideBrokerTransactionError(
      registration.queue,
      "in a PostgresMachineMemory on another database than the broker's",
    );
  }
}
