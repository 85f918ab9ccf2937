import type pg from 'pg';
import format from 'pg-format';
import { MigrationIndexError } from './errors';
import { derivedIdentifier, qualifiedName, quoteIdentifier } from './identifiers';

/**
 * A secondary index a migration creates, as data: the migration builds its `CREATE INDEX` statement
 * from it ({@link createIndexSql}) and `arvo-postgres doctor` checks the database against it. Every
 * index of layout version 1 is a plain btree over columns; unique or partial indexes would add fields.
 */
export interface MigrationIndex {
  /** Index name (unquoted), unique within the schema. */
  name: string;
  /** Table the index is on, in the migration's schema (unquoted). */
  table: string;
  /** Indexed columns, in index order (unquoted). */
  columns: string[];
}

/**
 * A column of a table a migration creates, as data: the migration's `CREATE TABLE` is built from it
 * ({@link createTableSql}) and the machine memory's structure check expects its `type` and `nullable`.
 */
export interface MigrationColumn {
  name: string;
  /** Type and constraints in `CREATE TABLE`, e.g. `timestamptz NOT NULL DEFAULT now()`. */
  definition: string;
  /** The column is the table's primary key. */
  primaryKey?: true;
  /** `information_schema.columns.data_type` of the column. */
  type: string;
  nullable: boolean;
}

/** `CREATE TABLE IF NOT EXISTS` of `table` in `schema` with `columns`, in order. */
function createTableSql(schema: string, table: string, columns: readonly MigrationColumn[]): string {
  const lines = columns.map(
    (column) => `  ${column.name} ${column.definition}${column.primaryKey ? ' PRIMARY KEY' : ''}`,
  );
  return `CREATE TABLE IF NOT EXISTS ${qualifiedName(schema, table)} (\n${lines.join(',\n')}\n)`;
}

/**
 * One table layout version of a module: idempotent, schema-qualified DDL statements. Modules keep
 * them as data (`migrations/v1.ts`, `v2.ts`, …) so the SQL can be reviewed, printed and applied by hand.
 */
export interface Migration {
  /** Layout version, 1, 2, … Applied in order, each once per component. */
  version: number;
  /** What the version changes, for people reading `arvo_postgres_migrations`. */
  description: string;
  /** The DDL, in order; includes the `CREATE INDEX` statement of each of {@link Migration.indexes}. */
  statements: string[];
  /** The secondary indexes this version creates. */
  indexes: MigrationIndex[];
}

/**
 * What `arvo_postgres_migrations` records versions of: one table of one module instance, named e.g.
 * `memory:<table>` or `lock:<table>` (several instances may share a schema), with its layout versions.
 */
export interface MigrationComponent {
  component: string;
  table: string;
  migrations: Migration[];
}

/** The index on `columns` of `table`, named `<table>_<columns joined by _>_idx` (kept within 63 bytes). */
export function indexOn(table: string, columns: string[]): MigrationIndex {
  return { name: derivedIdentifier(table, `${columns.join('_')}_idx`), table, columns };
}

/** `CREATE INDEX IF NOT EXISTS` for `index` on its table in `schema`, every identifier quoted. */
export function createIndexSql(schema: string, index: MigrationIndex): string {
  const columns = index.columns.map(quoteIdentifier).join(', ');
  return `CREATE INDEX IF NOT EXISTS ${quoteIdentifier(index.name)} ON ${qualifiedName(schema, index.table)} (${columns})`;
}

/**
 * The migration that creates table `table` of `schema` (and the schema) with `columns` and `indexes`:
 * every first layout version is one.
 */
export function createTableMigration(
  schema: string,
  table: string,
  layout: {
    version: number;
    description: string;
    columns: readonly MigrationColumn[];
    indexes: MigrationIndex[];
  },
): Migration {
  return {
    version: layout.version,
    description: layout.description,
    statements: [
      `CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`,
      createTableSql(schema, table, layout.columns),
      ...layout.indexes.map((index) => createIndexSql(schema, index)),
    ],
    indexes: layout.indexes,
  };
}

/** Name of the table recording applied versions (one per Postgres schema). */
export const MIGRATIONS_TABLE = 'arvo_postgres_migrations';

/** DDL of the bookkeeping table, created before any migration. */
export function migrationsTableSql(schema: string): string[] {
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`,
    `CREATE TABLE IF NOT EXISTS ${quoteIdentifier(schema)}.${quoteIdentifier(MIGRATIONS_TABLE)} (
  component text NOT NULL,
  version integer NOT NULL,
  description text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
)`,
  ];
}

/**
 * The DDL of `components` in `schema` as one SQL script: the bookkeeping table, then each version's
 * statements and the bookkeeping row that tells a later migration it is in place. For review or by hand.
 */
export function migrationScript(schema: string, components: readonly MigrationComponent[]): string {
  const statements = [...migrationsTableSql(schema)];
  for (const { component, migrations } of components) {
    for (const migration of migrations) {
      statements.push(...migration.statements);
      statements.push(
        format(
          'INSERT INTO %s (component, version, description) VALUES (%L, %s, %L) ON CONFLICT DO NOTHING',
          qualifiedName(schema, MIGRATIONS_TABLE),
          component,
          migration.version,
          migration.description,
        ),
      );
    }
  }
  return `${statements.join(';\n\n')};\n`;
}

/**
 * `$1` schema, `$2` index names → `index_name`, `table_name`, `columns` (text[] in index order; a NULL
 * element for an expression), `valid` and `definition` of each index of these names in the schema.
 */
const INDEXES_BY_NAME_SQL = `SELECT i.relname::text AS index_name, t.relname::text AS table_name,
  array_agg(a.attname::text ORDER BY k.ord) AS columns, x.indisvalid AS valid,
  pg_get_indexdef(x.indexrelid) AS definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND i.relname = ANY($2::text[])
GROUP BY i.relname, t.relname, x.indisvalid, x.indexrelid`;

/** One way an index of a migration is not as listed. */
export interface IndexProblem {
  index: MigrationIndex;
  /** No index of that name exists in the schema (the rest are about an index that does). */
  missing: boolean;
  /** One sentence naming the index, where it should be and what is there. */
  description: string;
}

/**
 * What is wrong with each of `indexes` in `schema`, in their order: missing, on another table, not a
 * plain btree on exactly its columns (other columns, a `WHERE` clause), or INVALID (an interrupted
 * build). Empty when every index is as its migration lists it. Used by `applyMigrations` and
 * `arvo-postgres doctor`.
 */
export async function indexProblems(
  client: pg.ClientBase | pg.Pool,
  schema: string,
  indexes: readonly MigrationIndex[],
): Promise<IndexProblem[]> {
  if (indexes.length === 0) return [];
  const { rows } = await client.query(INDEXES_BY_NAME_SQL, [schema, indexes.map((index) => index.name)]);
  const problems: IndexProblem[] = [];
  for (const index of indexes) {
    const where = `${schema}.${index.table}`;
    const problem = (missing: boolean, description: string) => problems.push({ index, missing, description });
    const found = rows.find((row) => row.index_name === index.name);
    if (!found) {
      problem(true, `index ${index.name} on ${where} (${index.columns.join(', ')}) is missing`);
      continue;
    }
    // The migrations' column names are lower-case non-keywords: pg_get_indexdef leaves them unquoted.
    const ending = ` USING btree (${index.columns.map(quoteIdentifier).join(', ')})`;
    if (found.table_name !== index.table) {
      const columns = (found.columns as (string | null)[]).map((column) => column ?? '<expression>');
      problem(
        false,
        `index ${schema}.${index.name} should be on ${where} (${index.columns.join(', ')}) but is on ${schema}.${found.table_name} (${columns.join(', ')}); rename one of the tables`,
      );
    } else if (!found.definition.endsWith(ending)) {
      problem(false, `index ${index.name} on ${where} is ${found.definition}, expected …${ending}`);
    }
    if (!found.valid) {
      problem(false, `index ${index.name} on ${where} is INVALID (an interrupted build); rebuild it`);
    }
  }
  return problems;
}

export interface ApplyMigrationsOptions {
  /** Postgres schema holding the component's tables and the bookkeeping table. */
  schema: string;
  /** Identifies what is migrated, e.g. `memory:arvo_workflow_state` (several instances may share a schema). */
  component: string;
  /**
   * The versions to apply; only their statements run (they include the index DDL), then the indexes
   * of the versions applied are checked.
   */
  migrations: readonly Migration[];
  /** Statements run first in the same transaction (e.g. `DROP TABLE` for `drop_and_recreate`). */
  before?: string[];
}

/**
 * Applies every migration newer than the component's recorded version, in one transaction, under an
 * advisory lock so that processes starting together do not race on `CREATE TABLE IF NOT EXISTS`
 * (which is not safe under concurrency). Returns the version now in place. Throws a
 * {@link MigrationIndexError} (and applies nothing) when an index of an applied version is not on
 * its table and columns afterwards: its name was taken, and `CREATE INDEX IF NOT EXISTS` skipped it.
 */
export async function applyMigrations(pool: pg.Pool, options: ApplyMigrationsOptions): Promise<number> {
  const table = `${quoteIdentifier(options.schema)}.${quoteIdentifier(MIGRATIONS_TABLE)}`;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended('arvo-postgres:migrate', 0))");
    for (const statement of migrationsTableSql(options.schema)) await client.query(statement);
    if (options.before?.length) {
      for (const statement of options.before) await client.query(statement);
      await client.query(`DELETE FROM ${table} WHERE component = $1`, [options.component]);
    }
    const { rows } = await client.query(
      `SELECT coalesce(max(version), 0) AS version FROM ${table} WHERE component = $1`,
      [options.component],
    );
    let current = Number(rows[0].version);
    const created: MigrationIndex[] = [];
    for (const migration of [...options.migrations].sort((a, b) => a.version - b.version)) {
      if (migration.version <= current) continue;
      for (const statement of migration.statements) await client.query(statement);
      created.push(...migration.indexes);
      await client.query(`INSERT INTO ${table} (component, version, description) VALUES ($1, $2, $3)`, [
        options.component,
        migration.version,
        migration.description,
      ]);
      current = migration.version;
    }
    const problems = await indexProblems(client, options.schema, created);
    if (problems.length > 0) {
      // Just after `CREATE INDEX IF NOT EXISTS`, a missing index means another relation has its name.
      const described = problems.map(({ index, missing, description }) =>
        missing
          ? `index ${options.schema}.${index.name} on ${options.schema}.${index.table} (${index.columns.join(', ')}) does not exist: its name is taken by a relation that is not an index`
          : description,
      );
      throw new MigrationIndexError(options.component, described);
    }
    await client.query('COMMIT');
    return current;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
