import { qualifiedName, quoteIdentifier } from '../shared/identifiers';

/**
 * The dashboard's own read-only SQL over the memory's state table and pg-boss's job table (queue
 * counts and dead letters come from the broker's statements, workflows from `src/history`). Names are validated by the caller;
 * every statement only reads, so a role with SELECT rights runs the dashboard.
 */
export interface DashboardStatements {
  /**
   * `$1` minutes → per queue `name`, `minutes_ago` (0 = the current minute), `finished` (completed,
   * failed or cancelled): a range scan of pg-boss's index on (name, completed_on) per queue.
   */
  throughput: string;
  /** The distinct statuses, by a loose scan of the (status, updated_at) index: no full scan. */
  statuses: string;
}

export function dashboardStatements(names: {
  schema: string;
  stateTable: string;
  pgBossSchema: string;
}): DashboardStatements {
  const state = qualifiedName(names.schema, names.stateTable);
  const job = `${quoteIdentifier(names.pgBossSchema)}.job`;
  return {
    throughput: `SELECT q.name, t.minutes_ago, t.finished
  FROM ${quoteIdentifier(names.pgBossSchema)}.queue q
  CROSS JOIN LATERAL (
    SELECT floor(extract(epoch FROM now() - j.completed_on) / 60)::int AS minutes_ago, count(*)::int AS finished
    FROM ${job} j
    WHERE j.name = q.name AND j.completed_on > now() - $1::int * interval '1 minute'
    GROUP BY 1
  ) t`,
    statuses: `WITH RECURSIVE found(status) AS (
    (SELECT status FROM ${state} WHERE status IS NOT NULL ORDER BY status LIMIT 1)
    UNION ALL
    SELECT (SELECT s.status FROM ${state} s WHERE s.status > f.status ORDER BY s.status LIMIT 1)
    FROM found f WHERE f.status IS NOT NULL
  )
  SELECT status FROM found WHERE status IS NOT NULL`,
  };
}
