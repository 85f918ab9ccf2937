import type { MigrationComponent } from '../shared/migrations';
import { lockMigrationV1 } from './migrations/v1';

/** The lock table `table` of `schema` as the migrated component `lock:<table>`, with its layout versions. */
export function lockComponent(schema: string, table: string): MigrationComponent {
  return { component: `lock:${table}`, table, migrations: [lockMigrationV1(schema, table)] };
}
