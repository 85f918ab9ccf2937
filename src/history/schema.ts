import type pg from 'pg';
import { applyMigrations, type MigrationComponent, migrationScript } from '../shared/migrations';
import type { ExpectedTable } from '../shared/table-structure';
import { historyMigrationV1 } from './migrations/v1';
import { HISTORY_COLUMNS_V2, historyMigrationV2 } from './migrations/v2';

/**
 * The event history table `table` of `schema` as the migrated component `history:<table>`. Both the
 * broker (which writes it) and the memory (whose deletes take a tree's history along) migrate it.
 */
export function historyComponent(schema: string, table: string): MigrationComponent {
  return {
    component: `history:${table}`,
    table,
    migrations: [historyMigrationV1(schema, table), historyMigrationV2(schema, table)],
  };
}

/** The history table `table` with the columns of its current layout version (`arvo-postgres doctor`). */
export function historyTableColumns(table: string): ExpectedTable {
  return { table, columns: HISTORY_COLUMNS_V2 };
}

/** Creates or migrates the history table (the broker's `migrate`, `arvo-postgres migrate --broker-only`). */
export async function migrateHistoryTable(pool: pg.Pool, schema: string, table: string): Promise<number> {
  return applyMigrations(pool, { schema, ...historyComponent(schema, table) });
}

/** The DDL of the history table as one script, for an administrator (`migrate --print-sql --broker-only`). */
export function historyMigrationSql(schema: string, table: string): string {
  return migrationScript(schema, [historyComponent(schema, table)]);
}
