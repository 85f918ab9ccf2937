import { quoteIdentifier } from '../shared/identifiers';

/**
 * The broker's own SQL over pg-boss's tables (`queue`, `job`; layout of pg-boss 12.38, see its
 * `plans.js`). Everything else goes through pg-boss's API. `schema` is validated by the caller.
 */

/** `$1 text[]` → the names among them that exist as queues, in any process's registration. */
export function existingQueuesSql(schema: string): string {
  return `SELECT name FROM ${quoteIdentifier(schema)}.queue WHERE name = ANY($1::text[])`;
}

/**
 * `$1` queue, `$2` job id, `$3` retry count of the attempt: makes this attempt the job's last, so
 * that pg-boss's `fail` (in the same transaction) dead-letters it at once. Fenced like pg-boss's own
 * settles: only while that attempt is still active.
 */
export function exhaustRetriesSql(schema: string): string {
  return `UPDATE ${quoteIdentifier(schema)}.job SET retry_limit = retry_count
    WHERE name = $1 AND id = $2::uuid AND retry_count = $3 AND state = 'active'`;
}

/**
 * Exact counts per queue in one statement, straight from the job table (pg-boss's own queue counts
 * are a cache refreshed once a minute). `$1 text[]`: the queues to report, in this order; `$2
 * boolean`: also every other queue in the database (by name, after those).
 *
 * - `queued`: created or retry (waiting to run), including `deferred` (start_after in the future);
 * - `active`, `failed`, `completed`: rows in that state still retained;
 * - `total`: every retained row (also cancelled);
 * - `dead_lettered`: retained copies of this queue's jobs in any dead-letter queue (a queue named
 *   as some queue's `dead_letter`);
 * - `oldest_queued_age_ms`: age of the oldest job ready to run now, null when none.
 */
export function queueStatsSql(schema: string): string {
  const job = `${quoteIdentifier(schema)}.job`;
  const queue = `${quoteIdentifier(schema)}.queue`;
  return `
    WITH names AS (
      SELECT n.name, n.position FROM unnest($1::text[]) WITH ORDINALITY AS n(name, position)
      UNION ALL
      SELECT q.name, 1000000000 + row_number() OVER (ORDER BY q.name)
        FROM ${queue} q
       WHERE $2::boolean AND NOT (q.name = ANY($1::text[]))
    ),
    counts AS (
      SELECT j.name,
        count(*) FILTER (WHERE j.state IN ('created', 'retry')) AS queued,
        count(*) FILTER (WHERE j.state = 'active') AS active,
        count(*) FILTER (WHERE j.state IN ('created', 'retry') AND j.start_after > now()) AS deferred,
        count(*) FILTER (WHERE j.state = 'failed') AS failed,
        count(*) FILTER (WHERE j.state = 'completed') AS completed,
        count(*) AS total,
        min(j.created_on) FILTER (WHERE j.state IN ('created', 'retry') AND j.start_after <= now()) AS oldest_ready
      FROM ${job} j
      WHERE j.name IN (SELECT name FROM names)
      GROUP BY j.name
    ),
    dead AS (
      SELECT d.source_name AS name, count(*) AS dead_lettered
      FROM ${job} d
      WHERE d.name IN (SELECT dead_letter FROM ${queue} WHERE dead_letter IS NOT NULL)
        AND d.source_name IN (SELECT name FROM names)
      GROUP BY d.source_name
    )
    SELECT n.name,
      coalesce(c.queued, 0)::int AS queued,
      coalesce(c.active, 0)::int AS active,
      coalesce(c.deferred, 0)::int AS deferred,
      coalesce(c.failed, 0)::int AS failed,
      coalesce(c.completed, 0)::int AS completed,
      coalesce(c.total, 0)::int AS total,
      coalesce(d.dead_lettered, 0)::int AS dead_lettered,
      floor(extract(epoch FROM now() - c.oldest_ready) * 1000)::float8 AS oldest_queued_age_ms
    FROM names n
    LEFT JOIN counts c ON c.name = n.name
    LEFT JOIN dead d ON d.name = n.name
    ORDER BY n.position`;
}

/**
 * Dead letters still waiting in dead-letter queue `$1` (created or retry), oldest first, optionally
 * only those from source queue `$2`; at most `$3` rows.
 */
export function pendingDeadLettersSql(schema: string): string {
  return `
    SELECT id, data, source_name, source_id, source_retry_count, source_output, created_on
      FROM ${quoteIdentifier(schema)}.job
     WHERE name = $1 AND state IN ('created', 'retry') AND ($2::text IS NULL OR source_name = $2)
     ORDER BY created_on, id
     LIMIT $3`;
}
