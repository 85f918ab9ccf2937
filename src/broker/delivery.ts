import { InvalidOptionError } from '../shared/errors';
import { integer, MAX_PG_INTEGER, numberOption } from '../shared/options';
import { InvalidEventError } from './errors';
import type { StoredEvent } from './event-codec';

/**
 * When and how urgently an event's job runs: `dispatch`'s `startAfter` / `priority`, or for an event
 * a handler emits (which has no call to pass options to) its extensions `startafter` / `priority`.
 * Deferred jobs send no NOTIFY: workers pick them up with their backstop poll
 * (`notifyPollingIntervalSeconds`). See docs/design.md, "Delayed events and priorities".
 */
export interface Delivery {
  /** pg-boss's `startAfter`: an ISO timestamp, or `"<n> seconds"` from the database's clock. */
  startAfter?: string;
  /** Higher is fetched first within a queue (pg-boss orders every fetch by priority, then age). */
  priority?: number;
}

/** The extensions of an event that set its {@link Delivery}. */
export const DELIVERY_EXTENSIONS = { startAfter: 'startafter', priority: 'priority' } as const;

/** A job priority: pg-boss keeps it in an `integer` column. */
export const PRIORITY_OPTION = integer({ min: -MAX_PG_INTEGER, max: MAX_PG_INTEGER });
// pg-boss adds the delay to now() as an interval: bounded like every other seconds option.
const DELAY_RANGE = { min: 0, max: MAX_PG_INTEGER };

/**
 * A `startAfter` argument: a valid `Date` (or, with `acceptText`, an ISO 8601 timestamp, as an
 * extension must be) or a number of seconds from now. Throws {@link InvalidOptionError} naming `option`.
 */
export function startAfterValue(value: unknown, option: string, acceptText = false): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return `${numberOption(value, option, DELAY_RANGE, 0)} seconds`;
  const date = value instanceof Date ? value : acceptText && isTimestamp(value) ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    const expected = acceptText ? 'an ISO 8601 timestamp with its zone' : 'a Date';
    throw new InvalidOptionError(
      option,
      `expected ${expected} or a number of seconds, got ${JSON.stringify(value)}`,
    );
  }
  return date.toISOString();
}

/** An ISO 8601 date-time with its zone (a bare number or date would parse as some other instant). */
function isTimestamp(value: unknown): value is string {
  return typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}.*(Z|[+-]\d{2}:?\d{2})$/i.test(value);
}

/** A `priority` argument: an integer (higher runs first). */
export function priorityValue(value: unknown, option: string): number | undefined {
  return value === undefined ? undefined : PRIORITY_OPTION.check(value, option);
}

/**
 * The delivery a stored event asks for through its extensions. Throws {@link InvalidEventError}
 * for a malformed one: `dispatch` refuses the event, a handler's output is dead-lettered.
 */
export function deliveryOf(stored: StoredEvent): Delivery {
  const { startAfter, priority } = DELIVERY_EXTENSIONS;
  if (stored[startAfter] === undefined && stored[priority] === undefined) return {};
  try {
    return withoutUndefined({
      startAfter: startAfterValue(stored[startAfter], startAfter, true),
      priority: priorityValue(stored[priority], priority),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidEventError(`Event ${stored.id}: extension ${reason}`, { cause: error });
  }
}

/** `delivery` without its unset fields (pg-boss's insert treats an explicit null differently). */
export function withoutUndefined(delivery: Delivery): Delivery {
  return Object.fromEntries(Object.entries(delivery).filter(([, value]) => value !== undefined));
}
