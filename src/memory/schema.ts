import { historyComponent } from '../history/schema';
import { LOCK_COLUMNS_V1 } from '../lock/migrations/v1';
import { lockComponent } from '../lock/schema';
import { qualifiedName } from '../shared/identifiers';
import { applyMigrations, type MigrationComponent, migrationScript } from '../shared/migrations';
import type { ManagedPool } from '../shared/pool';
import type { ExpectedTable } from '../shared/table-structure';
import { type MemoryTables, STATE_COLUMNS_V1, stateMigrationV1 } from './migrations/v1';
import { stateMigrationV2 } from './migrations/v2';
import { type MemoryMigrateMode, resolveMemoryLocation } from './options';

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

/** The state and lock tables with the columns of their layout version 1 (version 2 adds an index). */
export function memoryTableColumns(tables: MemoryTables): ExpectedTable[] {
  return [
    { table: tables.state, columns: STATE_COLUMNS_V1 },
    { table: tables.lock, columns: LOCK_COLUMNS_V1 },
  ];
}
