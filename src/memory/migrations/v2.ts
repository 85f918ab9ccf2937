import { createIndexSql, indexOn, type Migration } from '../../shared/migrations';

/**
 * State table layout version 2: an index on `(orchestrator, updated_at)`, so listing the workflows of
 * one orchestrator, most recently written first (`workflows list --orchestrator`, the dashboard), is
 * an index range scan however many records there are.
 */
export function stateMigrationV2(schema: string, table: string): Migration {
  const index = indexOn(table, ['orchestrator', 'updated_at']);
  return {
    version: 2,
    description: `workflow state table ${table}: index on (orchestrator, updated_at)`,
    statements: [createIndexSql(schema, index)],
    indexes: [index],
  };
}
