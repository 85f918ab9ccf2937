import { InvalidOptionError } from '../shared/errors';
import { expectObject } from '../shared/options';
import { CONNECTION_OPTION_KEYS, type ConnectionOptions } from '../shared/pool';
import type { MemoryMigrateMode, PostgresMachineMemoryOptions } from './options';

/**
 * The options of `@arvo-tools/postgres`'s `connectPostgresMachineMemory`, accepted here so that
 * switching is mechanical.
 * @deprecated Use {@link PostgresMachineMemoryOptions}; `docs/migrating-from-arvo-tools.md` maps each key.
 */
export interface ArvoToolsMachineMemoryOptions {
  version: 1;
  /** `state` and `lock` name this library's tables; `hierarchy` is not needed (the state table holds it). */
  tables?: { state?: string; lock?: string; hierarchy?: string };
  config: Pick<
    ConnectionOptions,
    | 'connectionString'
    | 'host'
    | 'port'
    | 'user'
    | 'password'
    | 'database'
    | 'max'
    | 'idleTimeoutMillis'
    | 'connectionTimeoutMillis'
    | 'statementTimeoutMillis'
  > & {
    /** Becomes `statementTimeoutMillis` (enforced by the server); the smaller wins when both are given. */
    queryTimeoutMillis?: number;
    lockConfig?: { maxRetries?: number; initialDelayMs?: number; backoffExponent?: number; ttlMs?: number };
    enableCleanup?: boolean;
    enableOtel?: boolean;
  };
  /** Default `noop`, as in `@arvo-tools/postgres`. */
  migrate?: 'noop' | 'if_tables_dont_exist' | 'dangerousely_force_migration';
}

/** Each option of the old shape and the option it becomes (dotted paths). */
const RENAMES: ReadonlyArray<readonly [string, string]> = [
  // The connection settings keep their names (statementTimeoutMillis before queryTimeoutMillis).
  ...CONNECTION_OPTION_KEYS.filter((key) => !['pool', 'ssl', 'applicationName'].includes(key)).map(
    (key) => [`config.${key}`, key] as const,
  ),
  ['config.queryTimeoutMillis', 'statementTimeoutMillis'],
  ...['maxRetries', 'initialDelayMs', 'backoffExponent', 'ttlMs'].map(
    (key) => [`config.lockConfig.${key}`, `lock.${key}`] as const,
  ),
  ['config.enableCleanup', 'cleanup.onCompletion'],
  ['config.enableOtel', 'enableOtel'],
  ['tables.state', 'tables.state'],
  ['tables.lock', 'tables.lock'],
];

/** `migrate` keeps its name; its values are translated (see `MIGRATE_MODES`). */
const TRANSLATED = ['migrate'];

/** Options of the old shape that have no counterpart: checked for shape, then left out. */
const DROPPED = ['version', 'tables.hierarchy'];

/** Objects of the old shape that hold options. */
const CONTAINERS = ['config', 'config.lockConfig', 'tables'];

const MIGRATE_MODES: Record<string, MemoryMigrateMode> = {
  noop: 'noop',
  if_tables_dont_exist: 'create_if_not_exists',
  dangerousely_force_migration: 'drop_and_recreate',
};

const DEPRECATION = `connectPostgresMachineMemory: the @arvo-tools/postgres options ({ version: 1, config, migrate, tables.hierarchy }) are deprecated; pass the options flat: config.connectionString/host/port/user/password/database/max/idleTimeoutMillis/connectionTimeoutMillis/statementTimeoutMillis -> the same names at the top level, config.queryTimeoutMillis -> statementTimeoutMillis, config.lockConfig.{maxRetries, initialDelayMs, backoffExponent, ttlMs} -> lock.{maxRetries, initialDelayMs, backoffExponent, ttlMs}, config.enableCleanup -> cleanup.onCompletion, config.enableOtel -> enableOtel, migrate 'if_tables_dont_exist' -> 'create_if_not_exists' and 'dangerousely_force_migration' -> 'drop_and_recreate' (and set migrate explicitly: its default here is 'create_if_not_exists'); version and tables.hierarchy are not needed. See docs/migrating-from-arvo-tools.md.`;

let warned = false;

/** `true` for options of the `@arvo-tools/postgres` shape (they have `version` or `config`). */
export function isArvoToolsOptions(options: unknown): options is ArvoToolsMachineMemoryOptions {
  return typeof options === 'object' && options !== null && ('version' in options || 'config' in options);
}

function valueAt(object: Record<string, unknown>, path: string): unknown {
  let current: unknown = object;
  for (const key of path.split('.')) current = (current as Record<string, unknown> | undefined)?.[key];
  return current;
}

function setAt(object: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  const last = keys.pop()!;
  let current = object;
  for (const key of keys) {
    current[key] ??= {};
    current = current[key] as Record<string, unknown>;
  }
  current[last] = value;
}

/** Whether timeout `value` bounds a statement tighter than `than` (0 = no timeout; non-numbers: let validation speak). */
function isTighterTimeout(value: unknown, than: unknown): boolean {
  if (typeof value !== 'number' || typeof than !== 'number') return true;
  return value !== 0 && (than === 0 || value < than);
}

/** Refuses keys the old shape does not have, naming them by their old dotted path. */
function expectOldShape(object: Record<string, unknown>, prefix: string): void {
  const known = [...RENAMES.map(([from]) => from), ...TRANSLATED, ...DROPPED, ...CONTAINERS];
  for (const [key, value] of Object.entries(object)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (CONTAINERS.includes(path)) {
      if (value === undefined) continue;
      expectOldShape(expectObject(value, path), path);
    } else if (!known.includes(path)) {
      const siblings = known.filter((candidate) => candidate.startsWith(prefix ? `${prefix}.` : ''));
      throw new InvalidOptionError(
        path,
        `unknown @arvo-tools/postgres option; expected one of ${siblings.join(', ')} (or pass this library's options: they cannot be mixed with \`version\`/\`config\`)`,
      );
    }
  }
}

/**
 * Translates `@arvo-tools/postgres` memory options into this library's and resolves them with
 * `resolve`. Emits one `DeprecationWarning` per process naming every replacement; an
 * {@link InvalidOptionError} names the option as the caller wrote it.
 */
export function resolveArvoToolsOptions<R>(
  given: ArvoToolsMachineMemoryOptions,
  resolve: (options: PostgresMachineMemoryOptions) => R,
): R {
  if (!warned) {
    warned = true;
    process.emitWarning(DEPRECATION, {
      type: 'DeprecationWarning',
      code: 'ARVO_POSTGRES_ARVO_TOOLS_OPTIONS',
    });
  }
  const old = expectObject(given, 'options');
  expectOldShape(old, '');
  if (old.version !== 1) {
    throw new InvalidOptionError(
      'version',
      `expected 1 (the @arvo-tools/postgres options version), got ${JSON.stringify(old.version)}`,
    );
  }
  if (old.config === undefined)
    throw new InvalidOptionError('config', 'expected an object with the connection settings');

  const translated: Record<string, unknown> = { migrate: 'noop' };
  const origin = new Map<string, string>();
  for (const [from, to] of RENAMES) {
    const value = valueAt(old, from);
    if (value === undefined) continue;
    const earlier = valueAt(translated, to);
    // Only queryTimeoutMillis meets an earlier value (statementTimeoutMillis): the tighter bound applies.
    if (earlier !== undefined && !isTighterTimeout(value, earlier)) continue;
    setAt(translated, to, value);
    origin.set(to, from);
  }
  if (old.migrate !== undefined) {
    const mode = typeof old.migrate === 'string' ? MIGRATE_MODES[old.migrate] : undefined;
    if (!mode) {
      throw new InvalidOptionError(
        'migrate',
        `expected one of ${Object.keys(MIGRATE_MODES)
          .map((m) => `'${m}'`)
          .join(', ')}, got ${JSON.stringify(old.migrate)}`,
      );
    }
    translated.migrate = mode;
  }
  try {
    return resolve(translated as PostgresMachineMemoryOptions);
  } catch (error) {
    const from = error instanceof InvalidOptionError ? origin.get(error.option) : undefined;
    throw from && from !== (error as InvalidOptionError).option
      ? new InvalidOptionError(from, (error as InvalidOptionError).reason)
      : error;
  }
}
