import { type ParseArgsConfig, parseArgs } from 'node:util';
import type pg from 'pg';
import type { MemoryTables } from '../memory/migrations/v1';
import { ArvoPostgresError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { silentLogger } from '../shared/logger';
import { AGE_RANGE_MS } from '../shared/options';
import { closePool, openPool, resolveConnection } from '../shared/pool';
import { redactValue } from '../shared/redact';
import { pgBossSchemasSql, queueNamesSql, tableExistsSql } from './sql';

export { formatAge } from '../shared/age';

/** Exit codes scripts can rely on. */
export const EXIT = {
  /** Done; nothing wrong found. */
  ok: 0,
  /** A problem was found (doctor, stuck workflows, unknown ids) or the operation failed. */
  problem: 1,
  /** The command line is wrong (unknown command or option, missing argument, no connection). */
  usage: 2,
} as const;

/** The command line is wrong: printed with the command's usage, exit code 2. */
export class UsageError extends ArvoPostgresError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** Where a command writes, and the environment it reads (`DATABASE_URL`). */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  /** Resolves when the user asks to stop (Ctrl-C or SIGTERM); for `--watch`. */
  interrupted: () => Promise<void>;
  /**
   * Clears the terminal and homes the cursor, written as is (never escaped like printed text); only
   * when stdout is a terminal, so `--watch` redraws in place there and appends otherwise.
   */
  clearScreen?: () => void;
}

/** One subcommand. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[], io: CliIo): Promise<number>;
}

/** Options every database command accepts (with the library defaults). */
const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  schema: { type: 'string', default: 'public' },
  'state-table': { type: 'string', default: 'arvo_workflow_state' },
  'lock-table': { type: 'string', default: 'arvo_workflow_lock' },
  'history-table': { type: 'string', default: 'arvo_event_history' },
  'pgboss-schema': { type: 'string', default: 'pgboss' },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

/** `--json`, which every command that prints a report accepts: print it as JSON instead. */
export const JSON_OPTION = {
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

export const CONNECTION_HELP = `Connection and names:
  --url <url>             postgres://user:password@host:port/database (default: $DATABASE_URL)
  --schema <name>         schema of the machine memory tables (default public)
  --state-table <name>    workflow state table (default arvo_workflow_state)
  --lock-table <name>     workflow lock table (default arvo_workflow_lock)
  --history-table <name>  event history table (default arvo_event_history)
  --pgboss-schema <name>  pg-boss schema (default pgboss)
  -h, --help              this help`;

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses `args` strictly; a parse error is a {@link UsageError}. */
function parse<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * What every command starts with: its flags (plus the connection flags) parsed, `--help` answered
 * with `command.usage` (then `null` is returned), stray positionals refused unless `positionals`,
 * and the schema and table names validated.
 */
export function parseCommand<O extends Options>(
  command: Pick<Command, 'usage'>,
  args: string[],
  options: O,
  io: CliIo,
  { positionals = false }: { positionals?: boolean } = {},
) {
  const parsed = parse(args, { ...CONNECTION_OPTIONS, ...options } as typeof CONNECTION_OPTIONS & O);
  if ((parsed.values as { help?: boolean }).help) {
    io.stdout(`${command.usage}\n`);
    return null;
  }
  if (!positionals && parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  }
  return { ...parsed, names: namesOf(parsed.values as Record<string, unknown>) };
}

/** What a command's `run` gets: its parsed command line, plus helpers bound to it. */
export type CommandLine<O extends Options> = NonNullable<ReturnType<typeof parseCommand<O>>> & {
  /** Runs `fn` with a pool on the command line's database, reading its pg-boss (see `onPgBoss`). */
  onPgBoss<T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T>;
  /** Prints `value` as JSON with `--json`, else as `render` writes it. */
  report<T>(value: T, render: (value: T) => string): void;
};

/**
 * A command whose usage ends with the connection flags' help and whose `run` starts from its parsed
 * command line (see `parseCommand`; `--help` is answered before `run`). `normalizeArgs` rewrites the
 * arguments before they are parsed.
 */
export function defineCommand<O extends Options>(definition: {
  name: string;
  summary: string;
  usage: string;
  options: O;
  positionals?: boolean;
  normalizeArgs?: (args: string[]) => string[];
  run(commandLine: CommandLine<O>, io: CliIo): Promise<number>;
}): Command {
  const { options, positionals = false, normalizeArgs = (args) => args } = definition;
  const command: Command = {
    name: definition.name,
    summary: definition.summary,
    usage: `${definition.usage}\n\n${CONNECTION_HELP}`,
    async run(args, io) {
      const parsed = parseCommand(command, normalizeArgs(args), options, io, { positionals });
      if (!parsed) return EXIT.ok;
      const onPgBoss = <T>(fn: (pool: pg.Pool) => Promise<T>) =>
        onPgBossDatabase(parsed.values, io, parsed.names.pgBossSchema, fn);
      const report = <T>(value: T, render: (value: T) => string) =>
        io.stdout((parsed.values as { json?: boolean }).json ? json(value) : render(value));
      return definition.run({ ...parsed, onPgBoss, report }, io);
    },
  };
  return command;
}

/** Names given on the command line, validated like the library validates them. */
export interface Names {
  schema: string;
  stateTable: string;
  lockTable: string;
  historyTable: string;
  pgBossSchema: string;
}

/** The memory's tables named on the command line. */
export function memoryTablesOf(names: Names): MemoryTables {
  return { state: names.stateTable, lock: names.lockTable, history: names.historyTable };
}

/** The schema and table names of the command line, each checked by `validateIdentifier` (a bad one is a usage error). */
function namesOf(values: Record<string, unknown>): Names {
  const check = (flag: string) => {
    try {
      return validateIdentifier(values[flag], `--${flag}`);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  };
  return {
    schema: check('schema'),
    stateTable: check('state-table'),
    lockTable: check('lock-table'),
    historyTable: check('history-table'),
    pgBossSchema: check('pgboss-schema'),
  };
}

/** The connection string from `--url` or `DATABASE_URL`. */
export function connectionStringOf(values: Record<string, unknown>, io: CliIo): string {
  const url = (values.url as string | undefined) ?? io.env.DATABASE_URL;
  if (!url) throw new UsageError('no database: pass --url or set DATABASE_URL');
  try {
    resolveConnection({ connectionString: url });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return url;
}

/** Runs `fn` with a small pool on the database, closed afterwards. */
export async function withPool<T>(connectionString: string, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const managed = openPool(
    resolveConnection({ connectionString, max: 2, applicationName: 'arvo-postgres-cli' }),
    silentLogger,
  );
  try {
    return await fn(managed.pool);
  } finally {
    await closePool(managed);
  }
}

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `90s`, `15m`, `1h`, `7d`, `2w`, `500ms` → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!match)
    throw new UsageError(
      `${flag}: expected a duration like 30s, 15m, 1h, 7d or 2w, got ${JSON.stringify(text)}`,
    );
  const unit = DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS];
  const ms = Number(match[1]) * unit;
  if (ms > AGE_RANGE_MS.max)
    throw new UsageError(`${flag}: at most ten years (3650d), got ${JSON.stringify(text)}`);
  return ms;
}

/** A positive integer flag. */
export function parseCount(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new UsageError(`${flag}: expected a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

/** A plain text table with a header row; columns padded to their widest cell. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return `${cells
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

/** JSON for `--json` output, with the values of secret keys and credentials in strings redacted. */
export function json(value: unknown): string {
  return `${JSON.stringify(redactValue(value), null, 2)}\n`;
}

/**
 * The names among `candidates` closest to `given` (edit distance at most 2, or one starts with the
 * other), best first: for "did you mean" hints.
 */
export function closestNames(given: string, candidates: readonly string[]): string[] {
  const distance = (a: string, b: string) => {
    let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
    for (const [i, charA] of [...a].entries()) {
      const current = [i + 1];
      for (const [j, charB] of [...b].entries()) {
        current.push(
          Math.min(previous[j + 1]! + 1, current[j]! + 1, previous[j]! + (charA === charB ? 0 : 1)),
        );
      }
      previous = current;
    }
    return previous[b.length]!;
  };
  return candidates
    .map((name) => ({ name, score: distance(given, name) }))
    .filter(
      ({ name, score }) =>
        score <= 2 || (given.length > 1 && (name.startsWith(given) || given.startsWith(name))),
    )
    .sort((a, b) => a.score - b.score)
    .map(({ name }) => name);
}

/** ` (did you mean X?)` for the closest of `candidates`, or nothing. */
export function didYouMean(given: string, candidates: readonly string[]): string {
  const [best] = closestNames(given, candidates);
  return best === undefined ? '' : ` (did you mean ${JSON.stringify(best)}?)`;
}

/**
 * Runs `fn`, which reads pg-boss's tables in `schema`. When a table is missing (SQLSTATE 42P01) and
 * pg-boss is not installed there, throws an error saying so and naming the schemas that do hold
 * pg-boss, instead of the raw `relation "<schema>.queue" does not exist`.
 */
export async function onPgBoss<T>(pool: pg.Pool, schema: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if ((error as { code?: unknown }).code !== '42P01') throw error;
    if ((await pool.query(tableExistsSql, [schema, 'queue'])).rows[0]?.exists) throw error;
    const found = (await pool.query(pgBossSchemasSql)).rows.map((row) => row.schema as string);
    const elsewhere =
      found.length === 0
        ? 'This database has no pg-boss schema: start a broker on it once, or run `arvo-postgres migrate`.'
        : `pg-boss is installed in ${found.map((name) => JSON.stringify(name)).join(', ')}: pass --pgboss-schema ${found[0]}.`;
    throw new ArvoPostgresError(
      'PGBOSS_MISSING',
      `no pg-boss schema ${JSON.stringify(schema)} in this database. ${elsewhere}`,
    );
  }
}

/** What the commands that read pg-boss share: a pool on the command line's database, its pg-boss in `schema` (see `onPgBoss`). */
export function onPgBossDatabase<T>(
  values: Record<string, unknown>,
  io: CliIo,
  schema: string,
  fn: (pool: pg.Pool) => Promise<T>,
): Promise<T> {
  return withPool(connectionStringOf(values, io), (pool) => onPgBoss(pool, schema, () => fn(pool)));
}

/** The given queues that pg-boss in `schema` does not have, each with a did-you-mean hint ('' when none is close). */
export async function unknownQueues(
  pool: pg.Pool,
  schema: string,
  queues: readonly string[],
): Promise<Array<{ queue: string; hint: string }>> {
  const existing: string[] = (await pool.query(queueNamesSql(schema))).rows.map((row) => row.name);
  return queues
    .filter((queue) => !existing.includes(queue))
    .map((queue) => ({ queue, hint: didYouMean(queue, existing) }));
}
