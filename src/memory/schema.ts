import { historyComponent } from '../history/schema';
import { LOCK_COLUMNS_V1 } from '../lock/migrations/v1';
import { lockComponent } from '../lock/schema';
import { qualifiedName } from '../shared/identifiers';
import {
  applyMigrations,
  type MigrationColumn,
  type MigrationComponent,
  migrationScript,
} from '../shared/migrations';
import type { ManagedPool } from '../shared/pool';
import { type MemoryTables, STATE_COLUMNS_V1, stateMigrationV1 } from './migrations/v1';
import { stateMigrationV2 } from './migrations/v2';
import { type MemoryMigrateMode, resolveMemoryLocation } from './options';
import type { MemoryStatements } from './sql';

/**
 * The migrated components of a machine memory, state table first: `memory:<state table>`, the
 * lock table's `lock:<lock table>` and the event history's `history:<history table>` (its deletes
 * take a tree's history along, so the table exists also before a broker writes it). What `migrate` applies and `arvo-postgres doctor` checks.
 */
export function memoryComponents(schema: string, tables: MemoryTables): MigrationComponent[] {
  return [
    {
      component: `memory:${tables.state}`,
      table: tables.state,
      migrations: [stateMigrationV1(schema, tables.state), stateMigrationV2(schema, tables.state)],
    },
    lockComponent(schema, tables.lock),
    historyComponent(schema, tables.history),
  ];
}

/**
 * The DDL a machine memory needs, as one SQL script (schema, tables, indexes and the bookkeeping row
 * that tells a later `create_if_not_exists` it is in place). For reviewing or applying by hand.
 */
export function memoryMigrationSql(
  options: { schema?: string; tables?: Partial<MemoryTables> } = {},
): string {
  const { schema, tables } = resolveMemoryLocation(options);
  return migrationScript(schema, memoryComponents(schema, tables));
}

/** Applies `mode` to the memory tables `tables` in `schema` (each table's migrations in one transaction). */
export async function migrateMemoryTables(
  pool: ManagedPool['pool'],
  schema: string,
  tables: MemoryTables,
  mode: MemoryMigrateMode,
): Promise<void> {
  if (mode === 'noop') return;
  for (const { component, table, migrations } of memoryComponents(schema, tables)) {
    await applyMigrations(pool, {
      schema,
      component,
      migrations,
      ...(mode === 'drop_and_recreate'
        ? { before: [`DROP TABLE IF EXISTS ${qualifiedName(schema, table)}`] }
        : {}),
    });
  }
}

/**
 * Every way the state and lock tables in `schema` differ from layout version 1 (existence, columns,
 * types, nullability, primary keys), one sentence each; empty when they match.
 */
export async function tableStructureProblems(
  pool: ManagedPool['pool'],
  statements: MemoryStatements,
  schema: string,
  tables: MemoryTables,
): Promise<string[]> {
  const names = [tables.state, tables.lock];
  const [columns, keys, anywhere] = await Promise.all([
    pool.query(statements.columns, [schema, names]),
    pool.query(statements.primaryKeys, [schema, names]),
    pool.query(statements.tablesAnywhere, [names]),
  ]);
  const problems: string[] = [];
  const check = (table: string, expected: readonly MigrationColumn[]) => {
    const where = `${schema}.${table}`;
    const actual = columns.rows.filter((row) => row.table_name === table);
    if (actual.length === 0) {
      const elsewhere = anywhere.rows
        .filter((row) => row.table_name === table && row.table_schema !== schema)
        .map((row) => row.table_schema);
      problems.push(
        `table ${where} does not exist${elsewhere.length ? ` (a table of that name exists in schema ${elsewhere.join(', ')})` : ''}`,
      );
      return;
    }
    for (const column of expected) {
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
    const primaryKey = expected.filter((column) => column.primaryKey).map((column) => column.name);
    const key = keys.rows.find((row) => row.table_name === table)?.columns as string[] | undefined;
    if (!key) {
      problems.push(`table ${where} has no primary key, expected PRIMARY KEY (${primaryKey.join(', ')})`);
    } else if (key.join(',') !== primaryKey.join(',')) {
      problems.push(
        `table ${where} has PRIMARY KEY (${key.join(', ')}), expected PRIMARY KEY (${primaryKey.join(', ')})`,
      );
    }
  };
  check(tables.state, STATE_COLUMNS_V1);
  check(tables.lock, LOCK_COLUMNS_V1);
  return problems;
}
