import { createHash } from 'node:crypto';
import { ArvoEvent } from 'arvo-core';
import { oversizedIndexedText, oversizedIndexedTextReason } from '../shared/indexed-text';
import { jsonUnstorableCharacter } from '../shared/json';
import { deliveryOf } from './delivery';
import { InvalidEventError, PayloadTooLargeError } from './errors';

/**
 * How events cross the queue: stored as `event.toJSON()` (one flat JSON object), rebuilt with
 * `new ArvoEvent(context, data, extensions)`. `createArvoEvent` is deliberately not used to rebuild:
 * it URI-encodes `source`/`subject` again, so a stored event would not come back equal.
 * A `Date` inside `data` is accepted in memory by ArvoEvent but travels as its ISO string.
 */

/** The context fields that may be null: absent from a stored event, they are rebuilt as null. */
const NULLABLE_FIELDS = [
  'dataschema',
  'to',
  'accesscontrol',
  'redirectto',
  'executionunits',
  'traceparent',
  'tracestate',
] as const;

/** The CloudEvents / Arvo context fields of `toJSON()`; every other key except `data` is an extension. */
const CONTEXT_FIELDS = new Set<string>([
  'id',
  'source',
  'specversion',
  'type',
  'subject',
  'datacontenttype',
  'time',
  ...NULLABLE_FIELDS,
]);

/** An event as stored in a job's `data` column. */
export type StoredEvent = Record<string, unknown> & {
  id: string;
  type: string;
  source: string;
  subject: string;
};

function looksLikeArvoEvent(value: unknown): value is ArvoEvent {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<ArvoEvent>;
  return (
    typeof candidate.toJSON === 'function' &&
    typeof candidate.id === 'string' &&
    typeof candidate.type === 'string' &&
    typeof candidate.source === 'string' &&
    typeof candidate.subject === 'string'
  );
}

/** An event serialized for storage by {@link serializeEvent}. */
export interface SerializedEvent {
  /** `toJSON()` of the event: its top-level fields are stored as they are (`data` as in `text`). */
  stored: StoredEvent;
  /** `JSON.stringify(stored)`: what the size and character checks saw, and what pg-boss's insert writes for `stored`. */
  text: string;
  /** Size of `text` in UTF-8 bytes. */
  bytes: number;
}

/**
 * Serializes `event` once for storage. Throws {@link InvalidEventError} for anything that is not an
 * ArvoEvent or that PostgreSQL cannot store (a NUL or lone surrogate, a subject over
 * `MAX_INDEXED_TEXT_BYTES`, a malformed `startafter` / `priority` extension), and {@link PayloadTooLargeError} over `maxPayloadBytes`.
 */
export function serializeEvent(event: unknown, maxPayloadBytes: number): SerializedEvent {
  if (!looksLikeArvoEvent(event)) {
    throw new InvalidEventError('Expected an ArvoEvent (with id, type, source, subject and toJSON())');
  }
  let stored: StoredEvent;
  let text: string;
  try {
    stored = event.toJSON() as unknown as StoredEvent;
    text = JSON.stringify(stored);
  } catch (error) {
    throw new InvalidEventError(`Event ${event.id} cannot be serialized to JSON`, { cause: error });
  }
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > maxPayloadBytes) throw new PayloadTooLargeError(event.id, bytes, maxPayloadBytes);
  const unstorable = jsonUnstorableCharacter(text);
  if (unstorable !== null) {
    throw new InvalidEventError(`Event ${event.id} contains ${unstorable}, which PostgreSQL cannot store`);
  }
  // The subject is the job's group key, a btree key: one too long would jam every fetch of its queue.
  const subjectBytes = typeof stored.subject === 'string' ? oversizedIndexedText(stored.subject) : null;
  if (subjectBytes !== null) {
    throw new InvalidEventError(`Event ${event.id}: its subject ${oversizedIndexedTextReason(subjectBytes)}`);
  }
  deliveryOf(stored);
  return { stored, text, bytes };
}

/**
 * The stored event of `event` (as it will be stored) and its size in bytes, once it is known to
 * rebuild: the boundary check of `dispatch`. Throws {@link InvalidEventError} for anything that is not
 * an ArvoEvent or cannot be rebuilt, and {@link PayloadTooLargeError} over `maxPayloadBytes`.
 */
export function encodeEvent(event: unknown, maxPayloadBytes: number): { stored: StoredEvent; bytes: number } {
  const { text, bytes } = serializeEvent(event, maxPayloadBytes);
  // Parsed back, so that what is checked to rebuild is exactly what will be stored.
  const stored = JSON.parse(text) as StoredEvent;
  decodeEvent(stored);
  return { stored, bytes };
}

/** Rebuilds the ArvoEvent stored by {@link encodeEvent}; throws {@link InvalidEventError} with the reason. */
export function decodeEvent(stored: unknown): ArvoEvent {
  if (typeof stored !== 'object' || stored === null || Array.isArray(stored)) {
    throw new InvalidEventError('Job data is not an event object');
  }
  const { data, ...rest } = stored as Record<string, unknown>;
  const context: Record<string, unknown> = {};
  const extensions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rest)) {
    if (CONTEXT_FIELDS.has(key)) context[key] = value;
    else extensions[key] = value;
  }
  for (const field of NULLABLE_FIELDS) if (context[field] === undefined) context[field] = null;
  try {
    return new ArvoEvent(context as any, data as any, extensions as any);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidEventError(`Job data cannot be rebuilt into an ArvoEvent: ${reason}`, { cause: error });
  }
}

/** The stored event's `to`, or null when it has none. */
export function eventDestination(stored: StoredEvent): string | null {
  return typeof stored.to === 'string' ? stored.to : null;
}

/** The event's `domain` (arvo 3, or an arvo 2 extension of that name); none means `null`. */
export function eventDomain(stored: StoredEvent): string | null {
  const domain = stored.domain;
  return typeof domain === 'string' && domain.length > 0 ? domain : null;
}

// RFC 4122 UUID, any version.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `value` is a UUID (job ids are), in either case. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}
// A fixed namespace for name-based job ids (RFC 4122 v5), so every process derives the same id.
const JOB_ID_NAMESPACE = Buffer.from('5b0f3c2e8a4d4f1e9c7a2d6b1e0f4a93', 'hex');

/** A name-based (v5) UUID of `name`, stable across processes and releases. */
export function nameBasedUuid(name: string): string {
  const hash = createHash('sha1').update(JOB_ID_NAMESPACE).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The job id of an event: its `id` when that is a UUID, else a name-based UUID of it. Enqueueing the
 * same event twice into a queue therefore stores it once (pg-boss keeps the first row while it lives).
 */
export function jobIdForEvent(eventId: string): string {
  return isUuid(eventId) ? eventId.toLowerCase() : nameBasedUuid(`arvo-event:${eventId}`);
}
