import type pg from 'pg';
import { validateIdentifier } from '../shared/identifiers';
import { applyMigrations, type MigrationComponent, migrationScript } from '../shared/migrations';
import { QUEUE_CONTROL_TABLE, queueControlMigrationV1 } from './migrations/v1';

/** The broker's own table in `schema` (pg-boss's) as the migrated component `broker:arvo_queue_control`. */
export function brokerComponent(schema: string): MigrationComponent {
  return {
    component: `broker:${QUEUE_CONTROL_TABLE}`,
    table: QUEUE_CONTROL_TABLE,
    migrations: [queueControlMigrationV1(schema)],
  };
}

/**
 * The DDL of the broker's own table (pg-boss's schema is `getConstructionPlans`), as one script for
 * an administrator to apply when the application runs with `migrate: false` (see SECURITY.md).
 */
export function brokerMigrationSql(options: { schema?: string } = {}): string {
  const schema = validateIdentifier(options.schema ?? 'pgboss', 'schema');
  return migrationScript(schema, [brokerComponent(schema)]);
}

/** Creates or migrates the broker's own table (the broker's `migrate` option, `arvo-postgres migrate`). */
export async function migrateBrokerTables(pool: pg.Pool, schema: string): Promise<void> {
  await applyMigrations(pool, { schema, ...brokerComponent(schema) });
}
