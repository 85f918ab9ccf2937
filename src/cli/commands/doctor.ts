import type pg from 'pg';
import { withPgBoss } from '../../broker/pgboss';
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

/** The secondary indexes the components' migrations create. */
function expectedIndexes(components: MigrationComponent[]): MigrationIndex[] {
  return components.flatMap((component) => component.migrations.flatMap((migration) => migration.indexes));
}

async function memoryTablesCheck(
  pool: pg.Pool,
  names: Names,
  components: MigrationComponent[],
): Promise<DoctorCheck> {
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
    const versions = [...new Set(components.map(knownVersion))].join(', ');
    return { name, ok: true, detail: `${detail} (layout version ${versions})`, problems: [], warnings: [] };
  } catch (error) {
    const problems =
      error instanceof MachineMemoryTableStructureError ? error.problems : [describeError(error).message];
    return { name, ok: false, detail, problems, warnings: [] };
  }
}

async function memoryIndexesCheck(
  pool: pg.Pool,
  names: Names,
  components: MigrationComponent[],
): Promise<DoctorCheck> {
  const expected = expectedIndexes(components);
  const problems = (await indexProblems(pool, names.schema, expected)).map(({ description }) => description);
  return {
    name: 'memory indexes',
    ok: problems.length === 0,
    detail: `${expected.length} expected`,
    problems,
    warnings: [],
  };
}

async function memoryMigrationsCheck(
  pool: pg.Pool,
  names: Names,
  components: MigrationComponent[],
): Promise<DoctorCheck> {
  const componentNames = components.map(({ component }) => component);
  const name = 'memory migrations';
  const { rows: exists } = await pool.query(tableExistsSql, [names.schema, MIGRATIONS_TABLE]);
  const recorded = exists[0]?.exists
    ? (await pool.query(recordedMigrationsSql(names.schema, MIGRATIONS_TABLE), [componentNames])).rows
    : [];
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const component of components) {
    const version = recorded.find((row) => row.component === component.component)?.version as
      | number
      | undefined;
    const known = knownVersion(component);
    if (version === undefined) {
      warnings.push(
        `no record of ${component.component} in ${names.schema}.${MIGRATIONS_TABLE} (tables created by hand? arvo-postgres migrate records it)`,
      );
    } else if (version > known) {
      problems.push(
        `${component.component} is at layout version ${version}; this version of arvo-postgres knows version ${known}`,
      );
    }
  }
  return { name, ok: problems.length === 0, detail: componentNames.join(', '), problems, warnings };
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
  summary: 'validate memory tables, indexes and the pg-boss schema; report what is wrong',
  usage: `Usage: arvo-postgres doctor [--json] [--broker-only]

Checks, without changing anything:
  connection         the database answers
  memory tables      state and lock tables: columns, types, nullability, primary keys
  memory indexes     the secondary indexes of every layout version exist, are valid, on the right columns
  memory migrations  the layout version recorded in <schema>.arvo_postgres_migrations (missing: warning)
  pg-boss schema     installed at the version pg-boss 12.38 needs, no drift in tables, indexes, functions

Exit codes: 0 no problem found; 1 a problem was found (each is listed); 2 usage.

  --json          print the checks as JSON
  --broker-only   check the connection and pg-boss only (a deployment without the machine memory)`,
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
      if (values['broker-only']) return [connection, await pgBossCheck(url, names)];
      const components = memoryComponents(names.schema, memoryTablesOf(names));
      return [
        connection,
        await memoryTablesCheck(pool, names, components),
        await memoryIndexesCheck(pool, names, components),
        await memoryMigrationsCheck(pool, names, components),
        await pgBossCheck(url, names),
      ];
    });
    report({ ok: checks.every((check) => check.ok), checks }, () => render(checks));
    return checks.every((check) => check.ok) ? EXIT.ok : EXIT.problem;
  },
});
