import { createHash } from 'node:crypto';
import format from 'pg-format';
import { InvalidOptionError } from './errors';

/**
 * Schema, table and queue-table names are interpolated into DDL and statements, so they pass an
 * allow-list first (letters, digits, underscore; not starting with a digit; at most 63 bytes, the
 * PostgreSQL limit beyond which names are silently truncated) and are then quoted by pg-format.
 * Rejecting instead of only quoting keeps names portable to psql, dashboards and GRANT scripts.
 */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Returns `name` when it is a safe SQL identifier; otherwise throws {@link InvalidOptionError} naming `option`. */
export function validateIdentifier(name: unknown, option: string): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name)) {
    const shown =
      typeof name === 'string'
        ? JSON.stringify(name.length > 70 ? `${name.slice(0, 70)}…` : name)
        : typeof name;
    throw new InvalidOptionError(
      option,
      `${shown} is not a valid identifier: use 1-63 letters, digits or underscores, not starting with a digit`,
    );
  }
  return name;
}

/** A quoted identifier, e.g. `"my_table"`. */
export function quoteIdentifier(name: string): string {
  return format.ident(name);
}

/** A quoted, schema-qualified name, e.g. `"app"."workflow_state"`. */
export function qualifiedName(schema: string, name: string): string {
  return `${format.ident(schema)}.${format.ident(name)}`;
}

/**
 * A name derived from `base` for an index, sequence or constraint (`<base>_<suffix>`), kept within the
 * 63-byte limit: when too long, `base` is shortened and a hash of the full name keeps it unique, so two
 * long table names never silently share an index name.
 */
export function derivedIdentifier(base: string, suffix: string): string {
  const full = `${base}_${suffix}`;
  if (full.length <= 63) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  return `${base.slice(0, 63 - suffix.length - hash.length - 2)}_${hash}_${suffix}`;
}
