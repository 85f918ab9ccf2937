import { finishedWorkflowSql } from '../memory/sql';
import { qualifiedName } from '../shared/identifiers';

/**
 * The CLI's own SQL over the machine memory's tables and the catalog (the stats and dead-letter
 * statements are the broker's, in `src/broker/sql.ts`). Names are validated by the caller.
 */

/** Workflow counts by orchestrator and status, with the oldest `updated_at` of each group. */
export function workflowCountsSql(schema: string, stateTable: string): string {
  return `SELECT coalesce(orchestrator, '-') AS orchestrator, coalesce(status, '-') AS status,
      count(*)::int AS count, min(updated_at) AS oldest_update
    FROM ${qualifiedName(schema, stateTable)}
    GROUP BY 1, 2
    ORDER BY 1, 2`;
}

/**
 * Workflows not finished (as the memory's retention sweep judges it) and not written for more than
 * `$1` ms, least recently updated first, at most `$2`.
 */
export function stuckWorkflowsSql(schema: string, stateTable: string): string {
  return `SELECT subject, orchestrator, status, updated_at,
      floor(extract(epoch FROM now() - updated_at) * 1000)::float8 AS idle_ms
    FROM ${qualifiedName(schema, stateTable)}
    WHERE NOT ${finishedWorkflowSql()}
      AND updated_at < now() - $1::float8 * interval '1 millisecond'
    ORDER BY updated_at, subject
    LIMIT $2`;
}

/** `$1 text[]` components → `component`, latest `version` recorded in the migrations table. */
export function recordedMigrationsSql(schema: string, migrationsTable: string): string {
  return `SELECT component, max(version)::int AS version FROM ${qualifiedName(schema, migrationsTable)}
    WHERE component = ANY($1::text[]) GROUP BY component`;
}

/** `$1` schema, `$2` table → whether the table exists. */
export const tableExistsSql = `SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL AS exists`;

/** Schemas holding pg-boss (its `queue`, `job` and `version` tables) → `schema`. */
export const pgBossSchemasSql = `SELECT n.nspname::text AS schema FROM pg_namespace n
  WHERE (SELECT count(*) FROM pg_class c
          WHERE c.relnamespace = n.oid AND c.relname IN ('queue', 'job', 'version')) = 3
  ORDER BY 1`;

/** Every queue name of the pg-boss schema, for "did you mean" hints. */
export function queueNamesSql(schema: string): string {
  return `SELECT name FROM ${qualifiedName(schema, 'queue')} ORDER BY name`;
}
