import { createTableMigration, indexOn, type Migration, type MigrationColumn } from '../../shared/migrations';

const column = (name: string, definition: string, type: string): MigrationColumn => ({
  name,
  definition,
  type,
  nullable: !definition.includes('NOT NULL'),
});

/**
 * Columns of the event history in layout version 1: one append-only row per handled attempt of an
 * event (`outcome` says how it ended), keyed by an identity so a timeline reads in insertion order.
 */
export const HISTORY_COLUMNS_V1: readonly MigrationColumn[] = [
  { ...column('id', 'bigint GENERATED ALWAYS AS IDENTITY', 'bigint'), primaryKey: true, nullable: false },
  column('subject', 'text NOT NULL', 'text'),
  column('event_id', 'text NOT NULL', 'text'),
  column('event_type', 'text', 'text'),
  column('source', 'text', 'text'),
  column('destination', 'text', 'text'),
  column('queue', 'text NOT NULL', 'text'),
  column('attempt', 'integer NOT NULL', 'integer'),
  column('outcome', 'text NOT NULL', 'text'),
  column('started_at', 'timestamptz NOT NULL', 'timestamp with time zone'),
  column('ended_at', 'timestamptz NOT NULL', 'timestamp with time zone'),
  column('duration_ms', 'integer NOT NULL', 'integer'),
  column('error', 'jsonb', 'jsonb'),
  column('produced', 'text[]', 'ARRAY'),
  column('traceparent', 'text', 'text'),
  column('payload', 'jsonb', 'jsonb'),
];

/** Event history layout version 1: the columns above, read by subject (a tree's timeline) or event id. */
export function historyMigrationV1(schema: string, table: string): Migration {
  return createTableMigration(schema, table, {
    version: 1,
    description: `event history table ${table}: one row per handled attempt of an event`,
    columns: HISTORY_COLUMNS_V1,
    indexes: [indexOn(table, ['subject', 'id']), indexOn(table, ['event_id'])],
  });
}
