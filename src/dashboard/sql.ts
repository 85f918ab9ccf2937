import { deadLetterQueuesCte } from '../broker/sql';
import { qualifiedName, quoteIdentifier } from '../shared/identifiers';

/**
 * The dashboard's own read-only SQL over the memory's state table and pg-boss's job table (queue
 * counts and dead letters come from the broker's statements). Names are validated by the caller;
 * every statement only reads, so a role with SELECT rights runs the dashboard.
 */
export interface DashboardStatements {
  /**
   * `$1` minutes → per queue `name`, `minutes_ago` (0 = the current minute), `finished` (completed,
   * failed or cancelled): a range scan of pg-boss's index on (name, completed_on) per queue.
   */
  throughput: string;
  /**
   * `$1` status, `$2` orchestrator, `$3 text[]` subjects (each null = no filter), `$4` cursor
   * `updated_at` (text, exact), `$5` cursor subject, `$6` limit → records, most recently updated
   * first (keyset pagination on `updated_at, subject`).
   */
  workflows: string;
  /** The distinct statuses, by a loose scan of the (status, updated_at) index: no full scan. */
  statuses: string;
  /** `$1` subject → the record with its columns. */
  workflow: string;
  /** `$1` root subject, `$2` limit → the records of the tree (without `data`), oldest first. */
  tree: string;
  /**
   * `$1 text[]` dead-letter queue names (as `DeadLetters`), `$2 text[]` subjects, `$3` limit → `id`
   * of the waiting dead letters whose event has one of these subjects, oldest first.
   */
  deadLettersOfSubjects: string;
  /** `$1` event id → `subject` of retained jobs (incl. dead letters) carrying that event. */
  subjectsOfEvent: string;
}

const RECORD_COLUMNS = `subject, parent_subject, root_subject, status, execution_status, orchestrator, initiator,
  source, version::text AS version, created_at, updated_at, updated_at::text AS updated_cursor`;

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
    workflows: `SELECT ${RECORD_COLUMNS} FROM ${state}
  WHERE ($1::text IS NULL OR status = $1)
    AND ($2::text IS NULL OR orchestrator = $2)
    AND ($3::text[] IS NULL OR subject = ANY($3::text[]))
    AND ($4::timestamptz IS NULL OR (updated_at, subject) < ($4::timestamptz, $5::text))
  ORDER BY updated_at DESC, subject DESC
  LIMIT $6`,
    statuses: `WITH RECURSIVE found(status) AS (
    (SELECT status FROM ${state} WHERE status IS NOT NULL ORDER BY status LIMIT 1)
    UNION ALL
    SELECT (SELECT s.status FROM ${state} s WHERE s.status > f.status ORDER BY s.status LIMIT 1)
    FROM found f WHERE f.status IS NOT NULL
  )
  SELECT status FROM found WHERE status IS NOT NULL`,
    workflow: `SELECT ${RECORD_COLUMNS}, data FROM ${state} WHERE subject = $1`,
    tree: `SELECT ${RECORD_COLUMNS} FROM ${state} WHERE root_subject = $1 ORDER BY created_at, subject LIMIT $2`,
    deadLettersOfSubjects: `WITH ${deadLetterQueuesCte(names.pgBossSchema)}
  SELECT j.id FROM ${job} j
  WHERE j.name IN (SELECT name FROM dead_letter_queues) AND j.state IN ('created', 'retry')
    AND j.data->>'subject' = ANY($2::text[])
  ORDER BY j.created_on, j.id
  LIMIT $3`,
    subjectsOfEvent: `SELECT DISTINCT j.data->>'subject' AS subject FROM ${job} j
  WHERE j.data->>'id' = $1 AND j.data->>'subject' IS NOT NULL
  LIMIT 10`,
  };
}
