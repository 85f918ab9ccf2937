import { ArvoPostgresError, InvalidOptionError } from './errors';
import { oversizedIndexedText, oversizedIndexedTextReason } from './indexed-text';
import { unstorableCharacterIn } from './json';
import { isSecretKey } from './redact';

// Small validators shared by every options object, so that each module reports a bad option the same
// way: the dotted option path plus what was expected and what was given.

/** What was given, for an error message; only its type when the option names a secret (`password`). */
function describe(value: unknown, option: string): string {
  if (value === null) return 'null';
  if (isSecretKey(option.split('.').at(-1) ?? option)) return `a value of type ${typeof value}`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  return `a value of type ${typeof value}`;
}

/** Throws unless `value` is a plain object (or undefined when `optional`). */
export function expectObject(value: unknown, option: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(option, `expected an object, got ${describe(value, option)}`);
  }
  return value as Record<string, unknown>;
}

/** Throws when `value` has keys other than `allowed`: a typo in an option name must not pass silently. */
export function expectKnownKeys(
  value: Record<string, unknown>,
  allowed: readonly string[],
  option: string,
): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const where = option ? `${option}.${key}` : key;
      throw new InvalidOptionError(where, `unknown option; expected one of ${allowed.join(', ')}`);
    }
  }
}

/**
 * The longest delay in ms a Node timer (`setTimeout`, `setInterval`) holds and PostgreSQL's
 * `statement_timeout` (a 32-bit integer) accepts: an option feeding either has this as its `max`
 * (Node turns a longer delay into 1 ms, PostgreSQL rejects every connection).
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * The largest PostgreSQL `integer`: an option stored in an `integer` column (pg-boss's queue settings)
 * has this as its `max`, so a larger value is refused when validated, not by `start()` with `22003`.
 */
export const MAX_PG_INTEGER = 2_147_483_647;

/**
 * Ages ("older than") in milliseconds: up to ten years. Further back is outside what PostgreSQL's
 * `now() - interval` arithmetic accepts, which would fail with a raw "interval out of range".
 */
export const AGE_RANGE_MS = { min: 0, max: 3650 * 86_400_000 } as const;

/** Allowed values of a numeric option: integers from `min` to `max`, any finite number with `fractional`. */
export interface NumericRange {
  min: number;
  max?: number;
  fractional?: boolean;
}

/** A number within `range`, or `fallback` when undefined. */
function numericOption(value: unknown, option: string, range: NumericRange, fallback: number): number {
  if (value === undefined) return fallback;
  const integer = !range.fractional;
  if (typeof value !== 'number' || !(integer ? Number.isInteger(value) : Number.isFinite(value))) {
    throw new InvalidOptionError(
      option,
      `expected ${integer ? 'an integer' : 'a finite number'}, got ${describe(value, option)}`,
    );
  }
  const max = range.max ?? (integer ? Number.MAX_SAFE_INTEGER : Number.MAX_VALUE);
  if (value < range.min || value > max) {
    throw new InvalidOptionError(
      option,
      `expected ${integer ? 'an integer' : 'a number'} from ${range.min} to ${max}, got ${describe(value, option)}`,
    );
  }
  return value;
}

/** An integer within `[min, max]`, or `fallback` when undefined. */
export function integerOption(
  value: unknown,
  option: string,
  range: { min: number; max?: number },
  fallback: number,
): number {
  // Only the bounds: a `NumericRange` with `fractional` passed here must not let fractions through.
  return numericOption(value, option, { min: range.min, max: range.max }, fallback);
}

/** A finite number within `[min, max]`, or `fallback` when undefined. */
export function numberOption(
  value: unknown,
  option: string,
  range: { min: number; max?: number },
  fallback: number,
): number {
  return numericOption(value, option, { ...range, fractional: true }, fallback);
}

/**
 * The numeric fields of the options object `given` (at the dotted path `option`) that `ranges`
 * names, each checked against its range (errors name `option.field`) or taken from `defaults`.
 */
export function numericFields<K extends string>(
  given: Record<string, unknown>,
  option: string,
  ranges: Record<K, NumericRange>,
  defaults: Record<NoInfer<K>, number>,
): Record<K, number> {
  const fields = {} as Record<K, number>;
  for (const key of Object.keys(ranges) as K[]) {
    fields[key] = numericOption(given[key], option ? `${option}.${key}` : key, ranges[key], defaults[key]);
  }
  return fields;
}

/**
 * An options object at `option` made of numeric fields only: unknown keys are refused, each field
 * is checked against its range in `ranges`, and missing fields (or a missing object) take `defaults`.
 */
export function numericOptions<K extends string>(
  value: unknown,
  option: string,
  ranges: Record<K, NumericRange>,
  defaults: Record<NoInfer<K>, number>,
): Record<K, number> {
  if (value === undefined) return defaults;
  const given = expectObject(value, option);
  expectKnownKeys(given, Object.keys(ranges), option);
  return numericFields(given, option, ranges, defaults);
}

/** A boolean, or `fallback` when undefined. */
export function booleanOption(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new InvalidOptionError(option, `expected true or false, got ${describe(value, option)}`);
  }
  return value;
}

/** One of `choices`, or `fallback` when undefined. */
export function enumOption<T extends string>(
  value: unknown,
  option: string,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !choices.includes(value as T)) {
    throw new InvalidOptionError(
      option,
      `expected one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${describe(value, option)}`,
    );
  }
  return value as T;
}

/** A non-empty string, or `fallback` when undefined. */
export function stringOption(value: unknown, option: string, fallback: string): string;
export function stringOption(value: unknown, option: string): string | undefined;
export function stringOption(value: unknown, option: string, fallback?: string): string | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidOptionError(option, `expected a non-empty string, got ${describe(value, option)}`);
  }
  return value;
}

/**
 * A non-empty string PostgreSQL can store as `text` and index (no NUL or lone surrogate, at most
 * `MAX_INDEXED_TEXT_BYTES`), for keys and subjects given to methods; otherwise an
 * {@link ArvoPostgresError} with `code`, naming `what`.
 */
export function requireText(value: unknown, what: string, code: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ArvoPostgresError(code, `${what} must be a non-empty string`);
  }
  const unstorable = unstorableCharacterIn(value);
  if (unstorable !== null) throw new ArvoPostgresError(code, `${what} cannot contain ${unstorable}`);
  const bytes = oversizedIndexedText(value);
  if (bytes !== null) throw new ArvoPostgresError(code, `${what} ${oversizedIndexedTextReason(bytes)}`);
  return value;
}
