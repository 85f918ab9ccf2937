import { createTableMigration, type Migration, type MigrationColumn } from '../../shared/migrations';

/** The broker's own table, beside pg-boss's in the broker's schema: what operators set per queue. */
export const QUEUE_CONTROL_TABLE = 'arvo_queue_control';

/**
 * Columns of the queue control table in layout version 1: a row per queue that was ever paused or
 * given a default priority; a queue without a row runs, at priority 0.
 */
export const QUEUE_CONTROL_COLUMNS_V1: readonly MigrationColumn[] = [
  { name: 'queue', definition: 'text', primaryKey: true, type: 'text', nullable: false },
  { name: 'paused', definition: 'boolean NOT NULL DEFAULT false', type: 'boolean', nullable: false },
  { name: 'default_priority', definition: 'integer', type: 'integer', nullable: true },
  {
    name: 'updated_at',
    definition: 'timestamptz NOT NULL DEFAULT now()',
    type: 'timestamp with time zone',
    nullable: false,
  },
];

/** Queue control table layout version 1 (no secondary index: it holds a row per queue at most). */
export function queueControlMigrationV1(schema: string): Migration {
  return createTableMigration(schema, QUEUE_CONTROL_TABLE, {
    version: 1,
    description: `queue control table ${QUEUE_CONTROL_TABLE}: ${QUEUE_CONTROL_COLUMNS_V1.map((column) => column.name).join(', ')}`,
    columns: QUEUE_CONTROL_COLUMNS_V1,
    indexes: [],
  });
}
