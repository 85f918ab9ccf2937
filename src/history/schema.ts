import type { MigrationComponent } from '../shared/migrations';
import { historyMigrationV1 } from './migrations/v1';
import { historyMigrationV2 } from './migrations/v2';

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
