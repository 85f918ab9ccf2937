import { quoteIdentifier } from '../shared/identifiers';
import { QUEUE_CONTROL_TABLE } from './migrations/v1';

/**
 * The broker's own SQL over pg-boss's tables (`queue`, `job`; layout of pg-boss 12.38, see its
 * `plans.js`). Everything else goes through pg-boss's API, in `pgboss.ts`. `schema` is validated by the caller.
 */

/**
 * `$1 text[]` → the names among them that exist as queues, in any process's registration, and
 * whether each is some queue's `dead_letter` (never a destination).
 */
export function existingQueuesSql(schema: string): string {
  const queue = `${quoteIdentifier(schema)}.queue`;
  return `SELECT q.name, EXISTS (SELECT 1 FROM ${queue} d WHERE d.dead_letter = q.name) AS dead_letter
            FROM ${queue} q WHERE q.name = ANY($1::text[])`;
}

/**
 * Exact counts per queue in one statement, straight from the job table (pg-boss's own queue counts
 * are a cache refreshed once a minute). `$1 text[]`: the queues to report, in this order; `$2
 * boolean`: also every other queue in the database (by name, after those); `$3 text[]`: names that
 * are dead-letter queues even before a queue names them (`deadLetterQueuesOption`).
 *
 * - `queued`: created or retry (waiting to run), including `deferred` (start_after in the future);
 * - `active`, `failed`: rows in that state;
 * - `completed`: finished rows retained (completed, or cancelled through pg-boss directly);
 * - `total`: every retained row.
 *
 * Exact and fast at scale: live rows are counted through pg-boss's partial index on live states
 * (`job_i14`), finished rows by an index-only scan of its index on `completed_on` (`job_i16`) per
 * queue, never by scanning the job table itself. That scan is the one cost that grows with
 * retention, so each of the `named` queues of `$1` (its length) gets its own uncorrelated count,
 * which PostgreSQL splits over parallel workers when the queue retains many finished rows (a
 * correlated count never runs in parallel). The other queues (`$2`) share one correlated count,
 * planned once however many queues the database has (each named count is planned on its own).
 * - `dead_lettered`: copies of this queue's jobs waiting in any dead-letter queue (a queue named
 *   as some queue's `dead_letter`, or in `$3`), i.e. what `DeadLetters.list` returns for it;
 * - `dead_lettered_recently`: of those, the ones dead-lettered less than `$4` seconds ago;
 * - `oldest_queued_age_ms`: age of the oldest job ready to run now, null when none.
 */
export function queueStatsSql(schema: string, named: number): string {
  const job = `${quoteIdentifier(schema)}.job`;
  const queue = `${quoteIdentifier(schema)}.queue`;
  const finishedRows = (name: string) =>
    `FROM ${job} fj WHERE fj.name = ${name} AND fj.completed_on IS NOT NULL`;
  const namedFinished = Array.from(
    { length: named },
    (_, index) => `(SELECT count(*) ${finishedRows(`($1::text[])[${index + 1}]`)})`,
  );
  return `
    WITH ${deadLetterQueuesCte(schema, '$3')},
    names AS (
      SELECT n.name, n.position FROM unnest($1::text[]) WITH ORDINALITY AS n(name, position)
      UNION ALL
      SELECT q.name, 1000000000 + row_number() OVER (ORDER BY q.name)
        FROM ${queue} q
       WHERE $2::boolean AND NOT (q.name = ANY($1::text[]))
    ),
    -- Live rows (waiting, active, failed) through pg-boss's partial index job_i14: few, even when
    -- millions of finished rows are retained.
    counts AS (
      SELECT j.name,
        count(*) FILTER (WHERE j.state IN ('created', 'retry')) AS queued,
        count(*) FILTER (WHERE j.state = 'active') AS active,
        count(*) FILTER (WHERE j.state IN ('created', 'retry') AND j.start_after > now()) AS deferred,
        count(*) FILTER (WHERE j.state = 'failed') AS failed,
        count(*) AS live,
        count(*) FILTER (WHERE j.completed_on IS NOT NULL) AS live_finished,
        min(j.created_on) FILTER (WHERE j.state IN ('created', 'retry') AND j.start_after <= now()) AS oldest_ready
      FROM ${job} j
      WHERE j.name IN (SELECT name FROM names) AND j.state IN ('created', 'retry', 'active', 'failed')
      GROUP BY j.name
    ),
    -- Finished rows of each named queue, at its position in $1: one uncorrelated count (an
    -- InitPlan) each, which PostgreSQL can run in parallel workers.
    named_finished AS (
      SELECT f.finished, f.position
      FROM unnest(ARRAY[${namedFinished.join(', ')}]::bigint[]) WITH ORDINALITY AS f(finished, position)
    ),
    -- Dead letters waiting in a dead-letter queue (what "dlq list" shows): live rows again, so
    -- pg-boss's partial index on live states serves them however many finished rows are retained.
    dead AS (
      SELECT d.source_name AS name, count(*) AS dead_lettered,
        count(*) FILTER (WHERE d.created_on > now() - make_interval(secs => $4)) AS dead_lettered_recently
      FROM ${job} d
      WHERE d.name IN (SELECT name FROM dead_letter_queues)
        AND d.state IN ('created', 'retry')
        AND d.source_name IN (SELECT name FROM names)
      GROUP BY d.source_name
    )
    SELECT n.name,
      coalesce(c.queued, 0)::int AS queued,
      coalesce(c.active, 0)::int AS active,
      coalesce(c.deferred, 0)::int AS deferred,
      coalesce(c.failed, 0)::int AS failed,
      (f.finished - coalesce(c.live_finished, 0))::int AS completed,
      (coalesce(c.live, 0) + f.finished - coalesce(c.live_finished, 0))::int AS total,
      coalesce(d.dead_lettered, 0)::int AS dead_lettered,
      coalesce(d.dead_lettered_recently, 0)::int AS dead_lettered_recently,
      floor(extract(epoch FROM now() - c.oldest_ready) * 1000)::float8 AS oldest_queued_age_ms
    FROM names n
    LEFT JOIN counts c ON c.name = n.name
    -- Finished rows (completed, cancelled, failed): an index-only scan of pg-boss's job_i16 per
    -- queue, the only count that grows with retention (a million retained jobs cost tens of ms of
    -- CPU). A named queue's is in named_finished; any other queue's is counted here, serially.
    LEFT JOIN named_finished nf ON nf.position = n.position
    CROSS JOIN LATERAL (
      SELECT coalesce(nf.finished, count(*)) AS finished ${finishedRows('n.name')} AND nf.finished IS NULL
    ) f
    LEFT JOIN dead d ON d.name = n.name
    ORDER BY n.position`;
}

/**
 * The dead-letter queues of the database (`namesParam`, default `$1`, a `text[]` of names to treat
 * as dead-letter queues too, e.g. a broker's default before any queue names it), as a CTE body:
 * every queue some queue names as its `dead_letter`. See `deadLetterQueuesOption` in options.ts.
 */
export function deadLetterQueuesCte(schema: string, namesParam = '$1'): string {
  return `dead_letter_queues AS (
      SELECT dead_letter AS name FROM ${quoteIdentifier(schema)}.queue WHERE dead_letter IS NOT NULL
      UNION SELECT unnest(${namesParam}::text[])
    )`;
}

/**
 * The dead letters a selection covers: waiting (created or retry) jobs in a dead-letter queue,
 * narrowed by `$2` dead-letter queue, `$3` source queue, `$4 uuid[]` ids and `$5` minimum age in
 * ms (each null = no filter). `j` is the dead-letter row.
 */
const DEAD_LETTER_SELECTION = `j.name IN (SELECT name FROM dead_letter_queues)
        AND j.state IN ('created', 'retry')
        AND ($2::text IS NULL OR j.name = $2)
        AND ($3::text IS NULL OR j.source_name = $3)
        AND ($4::uuid[] IS NULL OR j.id = ANY($4::uuid[]))
        AND ($5::float8 IS NULL OR j.created_on < now() - $5::float8 * interval '1 millisecond')`;

/** Dead letters of a selection (see `DEAD_LETTER_SELECTION`, `$1`-`$5`), oldest first, at most `$6`. */
export function deadLettersSql(schema: string): string {
  return `
    WITH ${deadLetterQueuesCte(schema)}
    SELECT j.id, j.name, j.data, j.source_name, j.source_id, j.source_retry_count, j.source_output, j.created_on
      FROM ${quoteIdentifier(schema)}.job j
     WHERE ${DEAD_LETTER_SELECTION}
     ORDER BY j.created_on, j.id
     LIMIT $6`;
}

/**
 * Claims, for the unreported-dead-letter sweep (`unreported-dead-letters.ts`), at most `$2` dead
 * letters (of the dead-letter queues, `$1` as in {@link deadLetterQueuesCte}) that no process
 * reported: those pg-boss made on its own, whose `source_output` is not the broker's failure record
 * (an expired claim: `{ value: { message: 'job timed out' } }`), or carries the `$3` mark the
 * failure policy adds when it leaves its settle to pg-boss. Locked until the claim commits (`SKIP
 * LOCKED`: sweeps of several brokers run side by side); `deadLetterReportedSql` then stores the
 * record, which no sweep claims again.
 */
export function unreportedDeadLettersSql(schema: string): string {
  return `
    WITH ${deadLetterQueuesCte(schema)}
    SELECT j.name, j.id, j.source_name, j.source_retry_count, j.source_output, j.created_on,
           j.data->>'id' AS event_id, j.data->>'type' AS event_type
      FROM ${quoteIdentifier(schema)}.job j
     WHERE j.name IN (SELECT name FROM dead_letter_queues)
       AND j.state IN ('created', 'retry')
       AND (j.source_output ? $3
            OR jsonb_typeof(j.source_output->'kind') IS DISTINCT FROM 'string'
            OR jsonb_typeof(j.source_output->'failedAt') IS DISTINCT FROM 'string'
            OR jsonb_typeof(j.source_output->'error') IS DISTINCT FROM 'object')
     LIMIT $2
     FOR UPDATE OF j SKIP LOCKED`;
}

/** Stores the failure records `$1` (`[{ name, id, record }]`) as the claimed dead letters' `source_output`. */
export function deadLetterReportedSql(schema: string): string {
  return `
    UPDATE ${quoteIdentifier(schema)}.job j
       SET source_output = r.record
      FROM jsonb_to_recordset($1::jsonb) AS r(name text, id uuid, record jsonb)
     WHERE j.name = r.name AND j.id = r.id`;
}

/**
 * Replays the dead letters of a selection (`$1`-`$5`, at most `$6`, oldest first) in one statement:
 * each becomes a new job (new id, retry count 0) on its source queue, with the columns pg-boss's own
 * redrive sets (12.38 `redriveInsertValues`: retry and expiry from the source queue as configured
 * now, `keep_until` out of reach like every job the broker inserts (`OUT_OF_REACH_RETENTION_SECONDS`); priority, group, trace context carried over) plus **`output` = the dead letter's
 * failure record**, which is how the broker finds the earlier failures when the replayed job fails
 * again (see `failureHistory`). The dead letters that were re-created are deleted; one whose source
 * queue no longer exists, or that collides with a job already there, stays. Returns
 * `dead_letter_id`, `job_id`, `queue` per replayed job.
 */
export function replayDeadLettersSql(schema: string): string {
  const s = quoteIdentifier(schema);
  return `
    WITH ${deadLetterQueuesCte(schema)},
    candidates AS (
      SELECT j.id, j.name, gen_random_uuid() AS new_id
        FROM ${s}.job j
        JOIN ${s}.queue q ON q.name = j.source_name
       WHERE ${DEAD_LETTER_SELECTION}
       ORDER BY j.created_on, j.id
       LIMIT $6
       FOR UPDATE OF j SKIP LOCKED
    ),
    inserted AS (
      INSERT INTO ${s}.job (id, name, data, priority, retry_limit, retry_backoff, retry_delay, retry_delay_max,
          expire_seconds, start_after, created_on, keep_until, deletion_seconds, policy, singleton_key, group_id,
          group_tier, heartbeat_seconds, dead_letter, source_root_id, trace_context, output)
      SELECT c.new_id, m.source_name, m.data, m.priority, q.retry_limit, q.retry_backoff, q.retry_delay,
          q.retry_delay_max, q.expire_seconds, ${s}.job_now(), ${s}.job_now(),
          ${s}.job_now() + ${OUT_OF_REACH_RETENTION_SECONDS} * interval '1s', q.deletion_seconds, q.policy, m.singleton_key,
          m.group_id, m.group_tier, q.heartbeat_seconds, q.dead_letter, coalesce(m.source_root_id, m.source_id),
          m.trace_context, m.source_output
        FROM candidates c
        JOIN ${s}.job m ON m.name = c.name AND m.id = c.id
        JOIN ${s}.queue q ON q.name = m.source_name
      ON CONFLICT DO NOTHING
      RETURNING id, name
    ),
    removed AS (
      DELETE FROM ${s}.job d
       USING candidates c, inserted i
       WHERE i.id = c.new_id AND d.name = c.name AND d.id = c.id
    )
    SELECT c.id AS dead_letter_id, i.id AS job_id, i.name AS queue
      FROM candidates c JOIN inserted i ON i.id = c.new_id
     ORDER BY c.id`;
}

/** Deletes the dead letters of a selection (`$1`-`$5`); returns their ids. */
export function purgeDeadLettersSql(schema: string): string {
  return `
    WITH ${deadLetterQueuesCte(schema)}
    DELETE FROM ${quoteIdentifier(schema)}.job j
     WHERE ${DEAD_LETTER_SELECTION}
    RETURNING j.id`;
}

/**
 * Seconds of pg-boss retention the broker gives every job it inserts into a served queue: its
 * `keep_until` (`start_after` + this) lies out of reach, so pg-boss's retention sweep, which deletes
 * waiting jobs past `keep_until`, never deletes one. The queue's own `retention_seconds` still
 * holds the user's `retentionSeconds`; the broker's expiry sweep (`expiringJobsSql`) reads it and
 * dead-letters instead of deleting. The largest PostgreSQL `integer` (about 68 years).
 */
export const OUT_OF_REACH_RETENTION_SECONDS = 2_147_483_647;

/**
 * Claims, for the expiry sweep, at most `$1` waiting jobs (created or retry) of any queue with a
 * dead-letter queue that have waited longer than their queue's `retention_seconds` since they came
 * due (enqueued, or their `start_after` when later): marks them `active` (so `deadLetterAttemptsSql`
 * can fail them terminally in the same transaction) and returns `name`, `id`, `retry_count`, `output`,
 * `event_id`, `event_type`, `retention_seconds`, and for the event history `created_on`, `subject`,
 * `source`, `destination`, `traceparent`. Workers skip the locked rows meanwhile; `SKIP LOCKED` lets sweeps of several
 * brokers run side by side.
 */
export function expiringJobsSql(schema: string): string {
  const s = quoteIdentifier(schema);
  return `
    WITH expiring AS (
      SELECT j.name, j.id, q.retention_seconds
        FROM ${s}.job j
        JOIN ${s}.queue q ON q.name = j.name
       WHERE j.state IN ('created', 'retry')
         AND j.dead_letter IS NOT NULL
         -- From when it came due: a delayed event (startAfter) is not expired by its delay.
         AND greatest(j.created_on, j.start_after) + q.retention_seconds * interval '1s' < now()
       LIMIT $1
       FOR UPDATE OF j SKIP LOCKED
    )
    UPDATE ${s}.job j
       SET state = 'active', started_on = now()
      FROM expiring e
     WHERE j.name = e.name AND j.id = e.id
    RETURNING j.name, j.id, j.retry_count, j.output, j.data->>'id' AS event_id, j.data->>'type' AS event_type,
              e.retention_seconds, j.created_on, j.data->>'subject' AS subject, j.data->>'source' AS source,
              j.data->>'to' AS destination, j.data->>'traceparent' AS traceparent`;
}

// ---------------------------------------------------------------- queue control (queue-control.ts)

function queueControlTable(schema: string): string {
  return `${quoteIdentifier(schema)}.${quoteIdentifier(QUEUE_CONTROL_TABLE)}`;
}

/** `$1` queue, `$2` paused: sets (creating the row when missing) whether the queue is paused. */
export function setPausedSql(schema: string): string {
  return `INSERT INTO ${queueControlTable(schema)} (queue, paused) VALUES ($1, $2)
    ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()`;
}

/** `$1` queue, `$2` integer or null: sets (creating the row when missing) the queue's default priority. */
export function setDefaultPrioritySql(schema: string): string {
  return `INSERT INTO ${queueControlTable(schema)} (queue, default_priority) VALUES ($1, $2)
    ON CONFLICT (queue) DO UPDATE SET default_priority = EXCLUDED.default_priority, updated_at = now()`;
}

/** Every queue's control row: `queue`, `paused`, `default_priority`. */
export function queueControlRowsSql(schema: string): string {
  return `SELECT queue, paused, default_priority FROM ${queueControlTable(schema)}`;
}

/**
 * `$1` queue → `found` (the queue exists), `dead_letter` (some queue's dead-letter queue) and
 * `waiting` (its jobs created, retrying or active), the queue row locked against a concurrent delete.
 */
export function queueDeletionCheckSql(schema: string): string {
  const queue = `${quoteIdentifier(schema)}.queue`;
  return `SELECT EXISTS (SELECT 1 FROM ${queue} d WHERE d.dead_letter = q.name) AS dead_letter,
      (SELECT count(*) FROM ${quoteIdentifier(schema)}.job j
        WHERE j.name = q.name AND j.state IN ('created', 'retry', 'active'))::int AS waiting
    FROM ${queue} q WHERE q.name = $1 FOR UPDATE OF q`;
}

/** `$1` queue: pg-boss's own `delete_queue` (its jobs, then its row), and the queue's control row. */
export function deleteQueueSql(schema: string): string[] {
  return [
    `SELECT ${quoteIdentifier(schema)}.delete_queue($1)`,
    `DELETE FROM ${queueControlTable(schema)} WHERE queue = $1`,
  ];
}

// ---------------------------------------------------------------- schedules (schedules.ts)

/**
 * `$1` the schedules queue: pg-boss's schedule rows of the broker's schedules (on that queue, and on
 * the factory queues `$1.<name>`), each with its tick event as `data`, by schedule name.
 */
export function schedulesSql(schema: string): string {
  return `SELECT name AS queue, key, cron, COALESCE(timezone, 'UTC') AS timezone, data, created_on, updated_on
    FROM ${quoteIdentifier(schema)}.schedule
   WHERE name = $1 OR starts_with(name, $1 || '.')
   ORDER BY data->'data'->>'schedule'`;
}
