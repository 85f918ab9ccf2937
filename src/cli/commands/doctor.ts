import type pg from 'pg';
import { QUEUE_CONTROL_COLUMNS_V1, QUEUE_CONTROL_TABLE } from '../../broker/migrations/v1';
import { withPgBoss } from '../../broker/pgboss';
import { brokerComponent } from '../../broker/schema';
import { historyComponent, historyTableColumns } from '../../history/schema';
import { MachineMemoryTableStructureError } from '../../memory/errors';
import { connectPostgresMachineMemory } from '../../memory/memory';
import { memoryComponents } from '../../memory/schema';
import { silentLogger } from '../../shared/logger';
import {
  indexProblems,
  MIGRATIONS_TABLE,
  type MigrationComponent,
  type MigrationIndex,
} from '../../shared/migrations';
import { describeError } from '../../shared/redact';
import { tableStructureProblems } from '../../shared/table-structure';
import {
  connectionStringOf,
  defineCommand,
  EXIT,
  JSON_OPTION,
  memoryTablesOf,
  type Names,
  withPool,
} from '../common';
import { recordedMigrationsSql, tableExistsSql } from '../sql';

/** One check: `problems` make it fail (exit 1); `warnings` are reported only. */
export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  problems: string[];
  warnings: string[];
}

/** The layout version this version of arvo-postgres creates (the newest of the migrations). */
function knownVersion(component: MigrationComponent): number {
  return Math.max(...component.migrations.map((migration) => migration.version));
}

/** The secondary indexes the component's migrations create. */
function indexesOf(component: MigrationComponent): MigrationIndex[] {
  return component.migrations.flatMap((migration) => migration.indexes);
}

/** A migrated component and the schema it is in (the broker's table sits in pg-boss's schema). */
interface Placed {
  schema: string;
  component: MigrationComponent;
}

/** What every index of the components' migrations is wrong about, in each component's schema. */
async function placedIndexProblems(pool: pg.Pool, placed: Placed[]): Promise<string[]> {
  const problems: string[] = [];
  for (const schema of new Set(placed.map((entry) => entry.schema))) {
    const indexes = placed
      .filter((entry) => entry.schema === schema)
      .flatMap(({ component }) => indexesOf(component));
    problems.push(...(await indexProblems(pool, schema, indexes)).map(({ description }) => description));
  }
  return problems;
}

async function memoryTablesCheck(pool: pg.Pool, names: Names, placed: Placed[]): Promise<DoctorCheck> {
  const name = 'memory tables';
  const detail = `${names.schema}.${names.stateTable}, ${names.schema}.${names.lockTable}`;
  try {
    const memory = await connectPostgresMachineMemory({
      pool,
      schema: names.schema,
      tables: memoryTablesOf(names),
      migrate: 'noop',
      logger: silentLogger,
    });
    await memory.close();
    const versions = [...new Set(placed.map(({ component }) => knownVersion(component)))].join(', ');
    return { name, ok: true, detail: `${detail} (layout version ${versions})`, problems: [], warnings: [] };
  } catch (error) {
    const problems =
      error instanceof MachineMemoryTableStructureError ? error.problems : [describeError(error).message];
    return { name, ok: false, detail, problems, warnings: [] };
  }
}

async function memoryIndexesCheck(pool: pg.Pool, placed: Placed[]): Promise<DoctorCheck> {
  const problems = await placedIndexProblems(pool, placed);
  const expected = placed.flatMap(({ component }) => indexesOf(component));
  return {
    name: 'memory indexes',
    ok: problems.length === 0,
    detail: `${expected.length} expected`,
    problems,
    warnings: [],
  };
}

/**
 * The tables brokers write besides pg-boss's: the queue control table (pg-boss's schema) and the event
 * history, with their columns, primary keys and, for `placed`, indexes.
 */
async function brokerTablesCheck(pool: pg.Pool, names: Names, placed: Placed[]): Promise<DoctorCheck> {
  const problems = [
    ...(await tableStructureProblems(pool, names.pgBossSchema, [
      { table: QUEUE_CONTROL_TABLE, columns: QUEUE_CONTROL_COLUMNS_V1 },
    ])),
    ...(await tableStructureProblems(pool, names.schema, [historyTableColumns(names.historyTable)])),
    ...(await placedIndexProblems(pool, placed)),
  ];
  return {
    name: 'broker tables',
    ok: problems.length === 0,
    detail: `${names.pgBossSchema}.${QUEUE_CONTROL_TABLE}, ${names.schema}.${names.historyTable}`,
    problems,
    warnings: [],
  };
}

/** The layout version recorded for each of `placed` in its schema's bookkeeping table. */
async function migrationsCheck(pool: pg.Pool, name: string, placed: Placed[]): Promise<DoctorCheck> {
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const schema of new Set(placed.map((entry) => entry.schema))) {
    const components = placed.filter((entry) => entry.schema === schema).map((entry) => entry.component);
    const { rows: exists } = await pool.query(tableExistsSql, [schema, MIGRATIONS_TABLE]);
    const recorded = exists[0]?.exists
      ? (
          await pool.query(recordedMigrationsSql(schema, MIGRATIONS_TABLE), [
            components.map(({ component }) => component),
          ])
        ).rows
      : [];
    for (const component of components) {
      const version = recorded.find((row) => row.component === component.component)?.version as
        | number
        | undefined;
      const known = knownVersion(component);
      if (version === undefined) {
        warnings.push(
          `no record of ${component.component} in ${schema}.${MIGRATIONS_TABLE} (tables created by hand? arvo-postgres migrate records it)`,
        );
      } else if (version > known) {
        problems.push(
          `${component.component} is at layout version ${version}; this version of arvo-postgres knows version ${known}`,
        );
      }
    }
  }
  const detail = placed.map(({ component }) => component.component).join(', ');
  return { name, ok: problems.length === 0, detail, problems, warnings };
}

async function pgBossCheck(url: string, names: Names): Promise<DoctorCheck> {
  const name = 'pg-boss schema';
  try {
    return await withPgBoss(url, names.pgBossSchema, false, async (boss) => {
      const version = await boss.schemaVersion();
      const drift = await boss.detectSchemaDrift();
      const problems = [
        ...drift.missingTables.map((table) => `table ${table} is missing`),
        ...drift.missing.map((index) => `index ${index.name} is missing`),
        ...drift.invalid.map((index) => `index ${index.name} is INVALID`),
        ...drift.mismatched.map((index) => `index ${index.name} differs from pg-boss's definition`),
        ...drift.missingFunctions.map((fn) => `function ${fn.name} is missing`),
        ...drift.mismatchedFunctions.map((fn) => `function ${fn.name} differs from pg-boss's definition`),
        ...drift.columnDrift.map((table) => `columns of ${table.table} differ from pg-boss's layout`),
        ...drift.constraintDrift.map((table) => `constraints of ${table.table} differ from pg-boss's layout`),
      ];
      if (!drift.ok && problems.length === 0)
        problems.push("schema differs from pg-boss's layout (detectSchemaDrift)");
      return {
        name,
        ok: problems.length === 0,
        detail: `${names.pgBossSchema} at version ${version}${problems.length === 0 ? ', no drift' : ''}`,
        problems,
        warnings: drift.extraIndexes.map((index) => `extra index ${index.name} on ${index.table}`),
      };
    });
  } catch (error) {
    const message = describeError(error).message;
    const hint =
      message === 'pg-boss is not installed' || message === 'pg-boss database requires migrations'
        ? ' (run arvo-postgres migrate, or apply migrate --print-sql)'
        : '';
    return { name, ok: false, detail: names.pgBossSchema, problems: [`${message}${hint}`], warnings: [] };
  }
}

function render(checks: DoctorCheck[]): string {
  const width = Math.max(...checks.map((check) => check.name.length));
  const lines: string[] = [];
  for (const check of checks) {
    lines.push(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.name.padEnd(width)}  ${check.detail}`);
    for (const problem of check.problems) lines.push(`        - ${problem}`);
    for (const warning of check.warnings) lines.push(`        ! ${warning}`);
  }
  const problems = checks.reduce((sum, check) => sum + check.problems.length, 0);
  lines.push(problems === 0 ? 'no problems found' : `${problems} problem${problems === 1 ? '' : 's'} found`);
  return `${lines.join('\n')}\n`;
}

export const doctorCommand = defineCommand({
  name: 'doctor',
  summary: 'validate memory and broker tables, indexes and the pg-boss schema; report what is wrong',
  usage: `Usage: arvo-postgres doctor [--json] [--broker-only]

Checks, without changing anything:
  connection         the database answers
  memory tables      state and lock tables: columns, types, nullability, primary keys
  memory indexes     the secondary indexes of every layout version exist, are valid, on the right columns
  memory migrations  the layout version recorded in <schema>.arvo_postgres_migrations (missing: warning)
  broker tables      the queue control table (in --pgboss-schema) and the event history table: columns,
                     types, nullability, primary keys (with --broker-only, the history's indexes too)
  broker migrations  their layout versions, recorded as above (missing: warning)
  pg-boss schema     installed at the version pg-boss 12.38 needs, no drift in tables, indexes, functions

Exit codes: 0 no problem found; 1 a problem was found (each is listed); 2 usage.

  --json          print the checks as JSON
  --broker-only   check the connection, the broker's tables and pg-boss only (a deployment without the
                  machine memory)`,
  options: {
    ...JSON_OPTION,
    'broker-only': { type: 'boolean', default: false },
  },
  async run({ values, names, report }, io) {
    const url = connectionStringOf(values, io);
    const checks = await withPool(url, async (pool) => {
      let version: string;
      try {
        version = (await pool.query("SELECT current_setting('server_version') AS version")).rows[0].version;
      } catch (error) {
        return [
          {
            name: 'connection',
            ok: false,
            detail: '',
            problems: [describeError(error).message],
            warnings: [],
          },
        ];
      }
      const connection: DoctorCheck = {
        name: 'connection',
        ok: true,
        detail: `PostgreSQL ${version}`,
        problems: [],
        warnings: [],
      };
      const place = (schema: string) => (component: MigrationComponent) => ({ schema, component });
      const brokerPlaced = [place(names.pgBossSchema)(brokerComponent(names.pgBossSchema))];
      if (values['broker-only']) {
        // Without the memory, the history table is the broker's alone to migrate (and to check).
        brokerPlaced.push(place(names.schema)(historyComponent(names.schema, names.historyTable)));
        return [
          connection,
          await brokerTablesCheck(pool, names, brokerPlaced),
          await migrationsCheck(pool, 'broker migrations', brokerPlaced),
          await pgBossCheck(url, names),
        ];
      }
      const memoryPlaced = memoryComponents(names.schema, memoryTablesOf(names)).map(place(names.schema));
      return [
        connection,
        await memoryTablesCheck(pool, names, memoryPlaced),
        await memoryIndexesCheck(pool, memoryPlaced),
        await migrationsCheck(pool, 'memory migrations', memoryPlaced),
        await brokerTablesCheck(pool, names, brokerPlaced),
        await migrationsCheck(pool, 'broker migrations', brokerPlaced),
        await pgBossCheck(url, names),
      ];
    });
    report({ ok: checks.every((check) => check.ok), checks }, () => render(checks));
    return checks.every((check) => check.ok) ? EXIT.ok : EXIT.problem;
  },
});
