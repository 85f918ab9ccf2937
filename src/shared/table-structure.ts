import type pg from 'pg';
import type { MigrationColumn } from './migrations';

/** `$1` schema, `$2` table names → `table_name`, `column_name`, `data_type`, `is_nullable`. */
const COLUMNS_SQL = `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
WHERE table_schema = $1 AND table_name = ANY($2::text[]) ORDER BY table_name, ordinal_position`;

/** `$1` schema, `$2` table names → `table_name`, `columns` (text[]) of each primary key. */
const PRIMARY_KEYS_SQL = `SELECT c.relname::text AS table_name, array_agg(a.attname::text ORDER BY k.ord) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = $1 AND c.relname = ANY($2::text[])
GROUP BY c.relname`;

/** `$1` table names → `table_schema`, `table_name` of tables with these names in any schema. */
const TABLES_ANYWHERE_SQL = `SELECT table_schema, table_name FROM information_schema.tables WHERE table_name = ANY($1::text[])`;

/** A table a migration creates, with the columns its current layout version has. */
export interface ExpectedTable {
  table: string;
  columns: readonly MigrationColumn[];
}

/**
 * Every way the tables `expected` in `schema` differ from their columns (existence, columns, types,
 * nullability, primary keys), one sentence each; empty when they match. Extra columns are allowed.
 * The memory's startup check and `arvo-postgres doctor` use it.
 */
export async function tableStructureProblems(
  pool: pg.Pool,
  schema: string,
  expected: readonly ExpectedTable[],
): Promise<string[]> {
  const names = expected.map(({ table }) => table);
  const [columns, keys, anywhere] = await Promise.all([
    pool.query(COLUMNS_SQL, [schema, names]),
    pool.query(PRIMARY_KEYS_SQL, [schema, names]),
    pool.query(TABLES_ANYWHERE_SQL, [names]),
  ]);
  const problems: string[] = [];
  for (const { table, columns: wanted } of expected) {
    const where = `${schema}.${table}`;
    const actual = columns.rows.filter((row) => row.table_name === table);
    if (actual.length === 0) {
      const elsewhere = anywhere.rows
        .filter((row) => row.table_name === table && row.table_schema !== schema)
        .map((row) => row.table_schema);
      problems.push(
        `table ${where} does not exist${elsewhere.length ? ` (a table of that name exists in schema ${elsewhere.join(', ')})` : ''}`,
      );
      continue;
    }
    for (const column of wanted) {
      const found = actual.find((row) => row.column_name === column.name);
      if (!found) {
        problems.push(`column ${where}.${column.name} is missing (expected ${column.type})`);
        continue;
      }
      if (found.data_type !== column.type) {
        problems.push(`column ${where}.${column.name} has type ${found.data_type}, expected ${column.type}`);
      }
      const nullable = found.is_nullable === 'YES';
      if (nullable !== column.nullable) {
        problems.push(
          `column ${where}.${column.name} is ${nullable ? 'nullable' : 'NOT NULL'}, expected ${column.nullable ? 'nullable' : 'NOT NULL'}`,
        );
      }
    }
    const primaryKey = wanted.filter((column) => column.primaryKey).map((column) => column.name);
    const key = keys.rows.find((row) => row.table_name === table)?.columns as string[] | undefined;
    if (!key) {
      problems.push(`table ${where} has no primary key, expected PRIMARY KEY (${primaryKey.join(', ')})`);
    } else if (key.join(',') !== primaryKey.join(',')) {
      problems.push(
        `table ${where} has PRIMARY KEY (${key.join(', ')}), expected PRIMARY KEY (${primaryKey.join(', ')})`,
      );
    }
  }
  return problems;
}
