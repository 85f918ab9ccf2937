import { InvalidOptionError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { silentLogger } from '../shared/logger';
import { booleanOption, expectKnownKeys, expectObject, stringOption } from '../shared/options';
import {
  CONNECTION_OPTION_KEYS,
  type ConnectionOptions,
  closePool,
  openPool,
  resolveConnection,
} from '../shared/pool';
import { redactError } from '../shared/redact';
import {
  ARVO_TOOLS_COLUMNS,
  type ArvoToolsTables,
  arvoToolsMigrationStatements,
} from './arvo-tools-migration-sql';
import { ArvoToolsMigrationError } from './errors';
import type { MemoryTables } from './migrations/v1';
import { resolveMemoryTables } from './options';
import { migrateMemoryTables } from './schema';

/** Options of {@link migrateFromArvoTools}. */
export interface ArvoToolsMigrationOptions extends ConnectionOptions {
  /** Where the `@arvo-tools/postgres` tables are. Defaults: schema `public`, its default table names. */
  from?: { schema?: string; tables?: Partial<ArvoToolsTables> };
  /** Schema of this library's tables (created when missing). Default `public`. */
  schema?: string;
  /** This library's table names. Defaults `arvo_workflow_state` and `arvo_workflow_lock`. */
  tables?: Partial<MemoryTables>;
  /**
   * Time zone of the prior art's `TIMESTAMP` columns: it wrote `now()` into columns without a zone,
   * so they hold wall-clock time in the `TimeZone` of its sessions. Default: the `TimeZone` of this
   * connection, which is the database's own setting unless the connection sets one (as the prior
   * art's did, unless its connection string set another: then give that zone here).
   */
  timeZone?: string;
  /** Report what would be copied and change nothing (live locks are reported, not refused). */
  dryRun?: boolean;
}

/** What {@link migrateFromArvoTools} found and did. */
export interface ArvoToolsMigrationReport {
  dryRun: boolean;
  /** The zone the naive timestamps were read in. */
  timeZone: string;
  /** Qualified names of the prior-art tables read. */
  from: ArvoToolsTables;
  /** Qualified name of the state table written. */
  to: string;
  /** Workflow records in the prior-art state table: roots and children. */
  workflows: number;
  roots: number;
  children: number;
  /** Records copied (in a dry run: that would be copied). */
  copied: number;
  /** Records whose subject already had a record here: left as they are (a previous run copied them). */
  alreadyPresent: number;
  /** Prior-art locks not yet expired (a real run refuses while there are any). */
  liveLocks: number;
  /** When the last live lock expires, or `null`. */
  lastLockExpiry: Date | null;
}

const DEFAULT_FROM: ArvoToolsTables = {
  state: 'arvopg_mm_state',
  lock: 'arvopg_mm_lock',
  hierarchy: 'arvopg_mm_hierarchy',
};

/** How long the copy waits for the prior-art tables' row locks before giving up. */
const LOCK_TIMEOUT = '10s';

function resolveOptions(options: unknown) {
  const given = expectObject(options, 'options');
  expectKnownKeys(given, [...CONNECTION_OPTION_KEYS, 'from', 'schema', 'tables', 'timeZone', 'dryRun'], '');
  const from = given.from === undefined ? {} : expectObject(given.from, 'from');
  expectKnownKeys(from, ['schema', 'tables'], 'from');
  const fromTables = from.tables === undefined ? {} : expectObject(from.tables, 'from.tables');
  expectKnownKeys(fromTables, ['state', 'lock', 'hierarchy'], 'from.tables');
  const source = {} as ArvoToolsTables;
  for (const key of ['state', 'lock', 'hierarchy'] as const) {
    const option = `from.tables.${key}`;
    source[key] = validateIdentifier(stringOption(fromTables[key], option, DEFAULT_FROM[key]), option);
  }
  const fromSchema = validateIdentifier(stringOption(from.schema, 'from.schema', 'public'), 'from.schema');
  const schema = validateIdentifier(stringOption(given.schema, 'schema', 'public'), 'schema');
  const tables = resolveMemoryTables(given.tables);
  const clash = (['state', 'lock', 'hierarchy'] as const).find(
    (key) => fromSchema === schema && [tables.state, tables.lock].includes(source[key]),
  );
  if (clash) {
    throw new InvalidOptionError(
      'tables',
      `${schema}.${source[clash]} is the @arvo-tools/postgres ${clash} table; give this library's tables other names (or another schema)`,
    );
  }
  return {
    connection: resolveConnection(given),
    fromSchema,
    source,
    schema,
    tables,
    timeZone: stringOption(given.timeZone, 'timeZone') ?? null,
    dryRun: booleanOption(given.dryRun, 'dryRun', false),
  };
}

/**
 * Copies an `@arvo-tools/postgres` installation's workflow state into this library's layout: each
 * record with its version, parent and root (from the prior art's hierarchy table), status columns,
 * initiator and source, its naive timestamps read in `timeZone`. Locks are not copied. The copy is one
 * transaction that holds the prior-art tables against writers; records whose subject is already here
 * are left alone, so running it again copies only what is new. Refuses with
 * {@link ArvoToolsMigrationError} while a prior-art lock is live (a worker of the old installation
 * may still be writing): stop them first. Creates this library's tables when missing (not in a dry run).
 */
export async function migrateFromArvoTools(
  options: ArvoToolsMigrationOptions,
): Promise<ArvoToolsMigrationReport> {
  const config = resolveOptions(options);
  const statements = arvoToolsMigrationStatements(
    config.fromSchema,
    config.source,
    config.schema,
    config.tables.state,
  );
  const managed = openPool(config.connection, silentLogger);
  try {
    const { pool } = managed;
    const names = Object.values(config.source);
    const { rows: columns } = await pool.query(statements.columns, [config.fromSchema, names]);
    const problems = (Object.keys(ARVO_TOOLS_COLUMNS) as Array<keyof ArvoToolsTables>).flatMap((key) => {
      const table = config.source[key];
      const found = columns.filter((row) => row.table_name === table).map((row) => row.column_name as string);
      if (found.length === 0) return [`table ${config.fromSchema}.${table} does not exist`];
      const missing = ARVO_TOOLS_COLUMNS[key].filter((column) => !found.includes(column));
      return missing.length ? [`${config.fromSchema}.${table} has no column ${missing.join(', ')}`] : [];
    });
    if (problems.length > 0) {
      throw new ArvoToolsMigrationError(
        `Not an @arvo-tools/postgres installation (name its tables with from.schema / from.tables): ${problems.join('; ')}`,
      );
    }
    if (!config.dryRun) await migrateMemoryTables(pool, config.schema, config.tables, 'create_if_not_exists');
    const { rows: targetExists } = await pool.query('SELECT to_regclass($1) IS NOT NULL AS exists', [
      `${config.schema}.${config.tables.state}`,
    ]);

    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
      let timeZone: string;
      try {
        ({ time_zone: timeZone } = (await client.query(statements.timeZone, [config.timeZone])).rows[0]);
      } catch (error) {
        if ((error as { code?: string }).code !== '22023') throw error;
        throw new InvalidOptionError(
          'timeZone',
          `PostgreSQL does not know the time zone ${JSON.stringify(config.timeZone)}`,
        );
      }
      await client.query(statements.lockSource);
      const { live, last_expiry: lastLockExpiry } = (await client.query(statements.liveLocks, [timeZone]))
        .rows[0];
      const counts = (await client.query(statements.counts)).rows[0];
      const alreadyPresent = targetExists[0].exists
        ? (await client.query(statements.present)).rows[0].present
        : 0;
      const report: ArvoToolsMigrationReport = {
        dryRun: config.dryRun,
        timeZone,
        from: {
          state: `${config.fromSchema}.${config.source.state}`,
          lock: `${config.fromSchema}.${config.source.lock}`,
          hierarchy: `${config.fromSchema}.${config.source.hierarchy}`,
        },
        to: `${config.schema}.${config.tables.state}`,
        workflows: counts.workflows,
        roots: counts.roots,
        children: counts.children,
        copied: counts.workflows - alreadyPresent,
        alreadyPresent,
        liveLocks: live,
        lastLockExpiry,
      };
      if (config.dryRun) {
        await client.query('ROLLBACK');
        return report;
      }
      if (live > 0) {
        throw new ArvoToolsMigrationError(
          `Refused: ${live} workflow lock${live === 1 ? '' : 's'} in ${report.from.lock} ${live === 1 ? 'is' : 'are'} still live (the last expires at ${lastLockExpiry.toISOString()}): an @arvo-tools/postgres worker may still be writing workflow state. Stop every worker of the old installation, wait until their locks expire (lockConfig.ttlMs, 120 s by default) and run the migration again; nothing was copied`,
        );
      }
      const { rowCount } = await client.query(statements.copy, [timeZone]);
      await client.query('COMMIT');
      return { ...report, copied: rowCount ?? 0 };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  } catch (error) {
    throw redactError(error);
  } finally {
    await closePool(managed).catch(() => {});
  }
}
