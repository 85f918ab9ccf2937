import { ArvoPostgresError, InvalidOptionError } from './errors';
import { validateIdentifier } from './identifiers';
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

// ---------------------------------------------------------------- option tables

/**
 * One option of an options object: how a given value is checked and, when the option has one that
 * does not depend on other options, its default. Its doc text is the TSDoc of the matching field of
 * the public options interface (`npm run docs:options` copies it into docs/configuration.md).
 */
export interface OptionSpec<T> {
  /** Checks a given value (never `undefined`) of the option at the dotted path `option`. */
  readonly check: (value: unknown, option: string) => T;
  /** The value when the option is not given. */
  readonly default?: T;
}

/** An {@link OptionSpec} with a default. */
export type DefaultedOptionSpec<T> = OptionSpec<T> & { readonly default: T };

/**
 * The option table of the public options interface `T`: one spec per key of `T`, each checking to a
 * value of that key's type. Declared with `satisfies OptionTable<T>`, a table whose keys or value
 * types drift from the interface does not compile, so the interface (its types and TSDoc, what
 * users read in the `.d.ts`) and the validation and defaults cannot disagree.
 */
export type OptionTable<T> = { readonly [K in keyof T]-?: OptionSpec<NonNullable<T[K]>> };

/** The values a table's options resolve to: the spec's type, possibly undefined when it has no default. */
export type OptionValues<S> = {
  -readonly [K in keyof S]: S[K] extends DefaultedOptionSpec<infer T>
    ? T
    : S[K] extends OptionSpec<infer T>
      ? T | undefined
      : never;
};

/**
 * Validates the options object at `option` (`''` for top-level options) against `table`: unknown
 * keys are refused, each given option is checked, a missing one takes its value from `base`, else
 * the table's default (left out when there is none). A missing object counts as `{}`.
 */
export function resolveOptions<S extends Record<string, OptionSpec<unknown>>>(
  table: S,
  value: unknown,
  option: string,
  base: Partial<OptionValues<S>> = {},
): OptionValues<S> {
  const given = value === undefined ? {} : expectObject(value, option || 'options');
  expectKnownKeys(given, Object.keys(table), option);
  const resolved: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table)) {
    const fallback = key in base ? (base as Record<string, unknown>)[key] : spec.default;
    const field =
      given[key] === undefined ? fallback : spec.check(given[key], option ? `${option}.${key}` : key);
    if (field !== undefined) resolved[key] = field;
  }
  return resolved as OptionValues<S>;
}

/** A spec from `check`, with `fallback` as its default when given. */
export function option<T>(check: (value: unknown, option: string) => T): OptionSpec<T>;
export function option<T>(check: (value: unknown, option: string) => T, fallback: T): DefaultedOptionSpec<T>;
export function option<T>(check: (value: unknown, option: string) => T, fallback?: T): OptionSpec<T> {
  return fallback === undefined ? { check } : { check, default: fallback };
}

/** An integer option within `range`. */
export function integer(range: { min: number; max?: number }): OptionSpec<number>;
export function integer(range: { min: number; max?: number }, fallback: number): DefaultedOptionSpec<number>;
export function integer(range: { min: number; max?: number }, fallback?: number): OptionSpec<number> {
  return { check: (value, at) => integerOption(value, at, range, 0), default: fallback };
}

/** A finite-number option within `range`. */
export function finite(range: { min: number; max?: number }, fallback: number): DefaultedOptionSpec<number> {
  return option((value, at) => numberOption(value, at, range, 0), fallback);
}

/** A boolean option. */
export function flag(fallback: boolean): DefaultedOptionSpec<boolean> {
  return option((value, at) => booleanOption(value, at, false), fallback);
}

/** An option taking one of `choices`. */
export function oneOf<const T extends string>(
  choices: readonly T[],
  fallback: NoInfer<T>,
): DefaultedOptionSpec<T> {
  return option((value, at) => enumOption(value, at, choices, fallback), fallback);
}

/** A non-empty string option. */
export function text(): OptionSpec<string>;
export function text(fallback: string): DefaultedOptionSpec<string>;
export function text(fallback?: string): OptionSpec<string> {
  return { check: (value, at) => stringOption(value, at, ''), default: fallback };
}

/** A SQL identifier option (a schema or table name, see `validateIdentifier`). */
export function identifier(fallback: string): DefaultedOptionSpec<string> {
  return option((value, at) => validateIdentifier(stringOption(value, at, fallback), at), fallback);
}

/**
 * An options object of its own, validated against `table` and then `refine`d (the rules between its
 * fields: `given` is the object as given); when not given, the table's defaults, refined.
 */
export function nested<S extends Record<string, OptionSpec<unknown>>>(
  table: S,
): DefaultedOptionSpec<OptionValues<S>> & { readonly table: S };
export function nested<S extends Record<string, OptionSpec<unknown>>, R>(
  table: S,
  refine: (values: OptionValues<S>, option: string, given: Record<string, unknown>) => R,
): DefaultedOptionSpec<R> & { readonly table: S };
export function nested<S extends Record<string, OptionSpec<unknown>>, R>(
  table: S,
  refine?: (values: OptionValues<S>, option: string, given: Record<string, unknown>) => R,
): DefaultedOptionSpec<R> & { readonly table: S } {
  const check = (value: unknown, at: string): R => {
    const values = resolveOptions(table, value, at);
    const given = value === undefined ? {} : (value as Record<string, unknown>);
    return refine ? refine(values, at, given) : (values as R);
  };
  return { table, check, default: check(undefined, '') };
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
