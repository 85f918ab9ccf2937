import { createTableMigration, indexOn, type Migration, type MigrationColumn } from '../../shared/migrations';

/** Table names of a machine memory. */
export interface MemoryTables {
  /**
   * Workflow state, one row per orchestration subject.
   * @defaultValue `arvo_workflow_state`
   */
  state: string;
  /**
   * TTL locks, one row per locked subject (layout of `src/lock`).
   * @defaultValue `arvo_workflow_lock`
   */
  lock: string;
  /**
   * The broker's event history (layout of `src/history`), migrated here too; deleting records deletes their history.
   * @defaultValue `arvo_event_history`
   */
  history: string;
}

const text = (name: string, nullable: boolean): MigrationColumn => ({
  name,
  definition: nullable ? 'text' : 'text NOT NULL',
  type: 'text',
  nullable,
});

const timestamp = (name: string): MigrationColumn => ({
  name,
  definition: 'timestamptz NOT NULL DEFAULT now()',
  type: 'timestamp with time zone',
  nullable: false,
});

/**
 * Columns of the state table in layout version 1. Subjects are `text` (real ones exceed 300
 * characters), the record is JSONB with a separate `version` for compare-and-swap, and the columns a
 * sweep or a hierarchy lookup filters on are pulled out of the record.
 */
export const STATE_COLUMNS_V1: readonly MigrationColumn[] = [
  { name: 'subject', definition: 'text', primaryKey: true, type: 'text', nullable: false },
  { name: 'data', definition: 'jsonb NOT NULL', type: 'jsonb', nullable: false },
  { name: 'version', definition: 'bigint NOT NULL', type: 'bigint', nullable: false },
  text('parent_subject', true),
  text('root_subject', false),
  text('status', true),
  text('execution_status', true),
  text('orchestrator', true),
  text('initiator', true),
  text('source', true),
  timestamp('created_at'),
  timestamp('updated_at'),
];

/** State table layout version 1: the columns above, with the hierarchy and sweep columns indexed. */
export function stateMigrationV1(schema: string, table: string): Migration {
  return createTableMigration(schema, table, {
    version: 1,
    description: `workflow state table ${table}: JSONB record, version, hierarchy and status columns`,
    columns: STATE_COLUMNS_V1,
    indexes: [
      indexOn(table, ['root_subject']),
      indexOn(table, ['parent_subject']),
      indexOn(table, ['status', 'updated_at']),
      indexOn(table, ['updated_at']),
    ],
  });
}
