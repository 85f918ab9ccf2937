import { ArvoPostgresError } from '../shared/errors';
import { describeError, redactError } from '../shared/redact';

/** An event given to `dispatch` (or returned by a handler) is not a valid, storable ArvoEvent. */
export class InvalidEventError extends ArvoPostgresError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_EVENT', message, options);
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
