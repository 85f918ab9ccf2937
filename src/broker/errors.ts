import { ArvoPostgresError } from '../shared/errors';
import { describeError, redactError } from '../shared/redact';

/** An event given to `dispatch` (or returned by a handler) is not a valid, storable ArvoEvent. */
export class InvalidEventError extends ArvoPostgresError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_EVENT', message, options);
  }
}

/**
 * `dispatchMany` refused its whole batch because of the event at `index` (nothing was enqueued);
 * `cause` is the error that event alone would have got from `dispatch`.
 */
export class InvalidBatchEventError extends InvalidEventError {
  /** Position of the refused event in the array given to `dispatchMany`. */
  readonly index: number;

  constructor(index: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`events[${index}] refused, nothing was dispatched: ${reason}`, { cause });
    this.index = index;
  }
}

/** The serialized event is larger than `maxPayloadBytes`. Nothing is truncated: the event is refused. */
export class PayloadTooLargeError extends ArvoPostgresError {
  /** Size of the serialized event in bytes. */
  readonly bytes: number;
  /** The configured limit in bytes. */
  readonly limit: number;

  constructor(eventId: string, bytes: number, limit: number) {
    super(
      'PAYLOAD_TOO_LARGE',
      `Event ${eventId} is ${bytes} bytes as JSON, over the limit of ${limit} bytes (option \`maxPayloadBytes\`)`,
    );
    this.bytes = bytes;
    this.limit = limit;
  }
}

/** A handler (or completion listener) for this source is already registered on this broker. */
export class DuplicateRegistrationError extends ArvoPostgresError {
  readonly source: string;

  constructor(source: string) {
    super(
      'DUPLICATE_REGISTRATION',
      `A handler or listener for source ${JSON.stringify(source)} is already registered`,
    );
    this.source = source;
  }
}

/** No queue exists anywhere in the database for the event's `to`. */
export class UnroutableEventError extends ArvoPostgresError {
  readonly destination: string | null;

  constructor(eventId: string, destination: string | null) {
    super(
      'UNROUTABLE_EVENT',
      destination === null
        ? `Event ${eventId} has no \`to\`, so it cannot be routed`
        : `Event ${eventId} is addressed to ${JSON.stringify(destination)}, but no queue of that name exists in the database (register a handler for it in some process first)`,
    );
    this.destination = destination;
  }
}

/**
 * An event given to `dispatch` is addressed to one of the broker's internal queues (a dead-letter
 * queue, the unroutable or the domained queue), which only the broker itself fills.
 */
export class InternalQueueError extends ArvoPostgresError {
  readonly destination: string;

  constructor(eventId: string, destination: string) {
    super(
      'INTERNAL_QUEUE',
      `Event ${eventId} is addressed to ${JSON.stringify(destination)}, an internal queue of the broker (dead-letter, unroutable or domained); events cannot be dispatched to it`,
    );
    this.destination = destination;
  }
}

/** `deleteQueue` refused: an internal queue, or jobs still waiting without `force`. */
export class QueueDeletionRefusedError extends ArvoPostgresError {
  readonly queue: string;

  constructor(queue: string, reason: string) {
    super('QUEUE_DELETION_REFUSED', `Queue ${JSON.stringify(queue)} was not deleted: ${reason}`);
    this.queue = queue;
  }
}

/** The broker was used before `start()` resolved, or after `stop()`. */
export class BrokerNotStartedError extends ArvoPostgresError {
  constructor(operation: string) {
    super('BROKER_NOT_STARTED', `Cannot ${operation}: the broker is not started (call start() first)`);
  }
}

/** `resolve()` did not see the reply within `timeoutMs`. */
export class ResolveTimeoutError extends ArvoPostgresError {
  readonly timeoutMs: number;

  constructor(eventId: string, timeoutMs: number) {
    super('RESOLVE_TIMEOUT', `No reply to event ${eventId} arrived within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A `resolve()` on this broker already waits for a reply on the same source and subject. A reply
 * carries nothing of the request but its subject (Arvo 2.2.13 copies no request id into outputs),
 * so two such calls could not tell their replies apart: the second is refused instead.
 */
export class ConcurrentResolveError extends ArvoPostgresError {
  readonly subject: string;

  constructor(source: string, subject: string) {
    super(
      'CONCURRENT_RESOLVE',
      `A resolve() for source ${JSON.stringify(source)} already waits on subject ${JSON.stringify(subject)}; replies are matched by subject only, so concurrent calls on one subject are refused`,
    );
    this.subject = subject;
  }
}

/**
 * An event reached a completion queue that only `resolve()` serves, and no `resolve()` in this process
 * waits for its subject (it timed out, or the reply belongs to another process's `resolve()`). The
 * job is retried, so another process's waiter can still take it, and then dead-lettered: never dropped.
 */
export class UnclaimedReplyError extends ArvoPostgresError {
  constructor(queue: string, eventId: string) {
    super(
      'UNCLAIMED_REPLY',
      `Event ${eventId} reached ${queue}, which only resolve() serves, and no resolve() here waits for its subject`,
    );
  }
}

/**
 * A handler (or listener) ran past its queue's `expireInSeconds`: its transaction is rolled back
 * and the attempt is failed with this as its failure record (kind `timeout`), before pg-boss's own
 * expiry would fail it without one. The handler itself keeps running until it returns.
 */
export class HandlerTimeoutError extends ArvoPostgresError {
  readonly expireInSeconds: number;

  constructor(queue: string, eventId: string, expireInSeconds: number) {
    super(
      'HANDLER_TIMEOUT',
      `The handler of ${queue} did not finish event ${eventId} within expireInSeconds (${expireInSeconds} s)`,
    );
    this.expireInSeconds = expireInSeconds;
  }
}

/**
 * The broker is stopping and its `stop()` deadline passed while this job's handler still ran: the
 * job was handed back to its queue (due at once, no retry spent) and the handler's transaction
 * takes no further statement. The handler itself keeps running until it returns.
 */
export class BrokerStoppingError extends ArvoPostgresError {
  constructor(queue: string, jobId: string) {
    super(
      'BROKER_STOPPING',
      `The broker stopped before ${queue} finished job ${jobId}; the job was handed back`,
    );
  }
}

/**
 * The work of a job was rolled back with its whole batch through no fault of its own: another job of
 * the batch that wrote state lost its claim (expired, or failed by `stop()`) or could not have its
 * outputs written before the batch's commit, and its state could not be undone alone. The job is
 * handed back to its queue (due at once, no retry spent) and runs again.
 */
export class BatchRolledBackError extends ArvoPostgresError {
  constructor(queue: string, jobId: string) {
    super(
      'BATCH_ROLLED_BACK',
      `Job ${jobId} of ${queue} was rolled back with its batch (a neighbour's state could not be kept); the job was handed back`,
    );
  }
}

/**
 * The failure of an event that waited in its queue longer than the queue's `retentionSeconds`
 * without being delivered (its consumer was down): never thrown, it is the error of the `expired`
 * dead letter the broker's retention sweep makes of it.
 */
export class EventExpiredError extends ArvoPostgresError {
  constructor(eventId: string, queue: string, retentionSeconds: number) {
    super(
      'EVENT_EXPIRED',
      `Event ${eventId} waited in ${queue} longer than its retentionSeconds (${retentionSeconds} s) without being delivered`,
    );
  }
}

/**
 * An orchestrator was registered whose machine memory cannot write through the job's transaction
 * (a `PostgresMachineMemory` on another database, or another kind of memory): its state would
 * commit before the outputs, and a crash between the two stalls the workflow for good. Register it
 * with `allowStateOutsideBrokerTransaction: true` to accept that.
 */
export class StateOutsideBrokerTransactionError extends ArvoPostgresError {
  readonly source: string;

  constructor(source: string, reason: string) {
    super(
      'STATE_OUTSIDE_BROKER_TRANSACTION',
      `The orchestrator ${JSON.stringify(source)} keeps its state ${reason}, so its state writes cannot commit in the broker's transaction with its outputs: a crash between the two commits leaves state advanced without outputs and the workflow stalls. Use a PostgresMachineMemory on the broker's database, or register with { allowStateOutsideBrokerTransaction: true } to accept that (see the README, "One transaction per handled event")`,
    );
    this.source = source;
  }
}

/** PostgreSQL could not be reached (connection refused, DNS failure, server shutting down, ...). */
export class DatabaseUnavailableError extends ArvoPostgresError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATABASE_UNAVAILABLE', message, options);
  }
}

/** `Cannot <operation>: PostgreSQL is unavailable (<reason>)`, redacted, with the redacted error as cause. */
export function databaseUnavailable(operation: string, error: unknown): DatabaseUnavailableError {
  return new DatabaseUnavailableError(
    `Cannot ${operation}: PostgreSQL is unavailable (${describeError(error).message})`,
    { cause: redactError(error) },
  );
}

// SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown, crash).
const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-3])/;
const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/** Whether `error` says the database could not be reached (as opposed to a statement failing). */
export function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (UNAVAILABLE_NODE_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code))) {
    return true;
  }
  if (
    /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED/i.test(error.message)
  ) {
    return true;
  }
  const nested = (error as { errors?: unknown }).errors;
  return Array.isArray(nested) && nested.some(isConnectionFailure);
}

/**
 * What pg-boss emitted as `error`, as an `Error` (an `Error` already, or its plain copy
 * `{ ...error, message, stack, queue, worker }`, which would otherwise log as `[object Object]`)
 * plus the queue and worker it names.
 */
export function pgBossError(emitted: unknown): { error: unknown; context: Record<string, string> } {
  if (emitted instanceof Error || typeof emitted !== 'object' || emitted === null) {
    return { error: emitted, context: {} };
  }
  const { message, stack, name, code, queue, worker } = emitted as Record<string, unknown>;
  const error = new Error(typeof message === 'string' ? message : JSON.stringify(emitted));
  if (typeof name === 'string') error.name = name;
  if (typeof stack === 'string') error.stack = stack;
  if (typeof code === 'string') Object.assign(error, { code });
  const context: Record<string, string> = {};
  if (typeof queue === 'string') context.queue = queue;
  if (typeof worker === 'string') context.worker = worker;
  return { error, context };
}
