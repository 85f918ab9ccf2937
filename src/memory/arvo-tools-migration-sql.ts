import { qualifiedName } from '../shared/identifiers';

/** Qualified names of an `@arvo-tools/postgres` installation's tables. */
export interface ArvoToolsTables {
  state: string;
  lock: string;
  hierarchy: string;
}

/** Columns each prior-art table must have for the copy (its layout as `@arvo-tools/postgres` 1.x creates it). */
export const ARVO_TOOLS_COLUMNS: Record<keyof ArvoToolsTables, readonly string[]> = {
  state: [
    'subject',
    'data',
    'version',
    'execution_status',
    'parent_subject',
    'initiator',
    'source',
    'created_at',
    'updated_at',
  ],
  lock: ['subject', 'expires_at'],
  hierarchy: ['subject', 'root_subject'],
};

/** The statements of the copy from a prior-art installation (`$1` is always the time zone of its naive timestamps). */
export interface ArvoToolsMigrationStatements {
  /** `$1` schema, `$2` table names → `table_name`, `column_name` of those tables. */
  columns: string;
  /**
   * `$1` time zone or NULL → `time_zone`: that zone, or the session's `TimeZone` for NULL; PostgreSQL
   * rejects an unknown zone (SQLSTATE 22023).
   */
  timeZone: string;
  /** Blocks prior-art writers (and waits for running ones) until the copy commits. */
  lockSource: string;
  /** `$1` time zone → `live`, `last_expiry` (timestamptz) of the locks that have not expired. */
  liveLocks: string;
  /** → `workflows`, `roots`, `children` in the prior-art state table. */
  counts: string;
  /** → `present`: prior-art subjects that already have a record in the target table. */
  present: string;
  /**
   * `$1` time zone. Copies every prior-art record whose subject has no record in the target table;
   * one row returned per record copied.
   */
  copy: string;
}

export function arvoToolsMigrationStatements(
  fromSchema: string,
  from: ArvoToolsTables,
  toSchema: string,
  toState: string,
): ArvoToolsMigrationStatements {
  const state = qualifiedName(fromSchema, from.state);
  const lock = qualifiedName(fromSchema, from.lock);
  const hierarchy = qualifiedName(fromSchema, from.hierarchy);
  const target = qualifiedName(toSchema, toState);
  // A column the record's JSON holds as a string, as `write` extracts it.
  const text = (key: string) =>
    `CASE WHEN jsonb_typeof(s.data -> '${key}') = 'string' THEN s.data ->> '${key}' END`;
  return {
    columns: `SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = $1 AND table_name = ANY($2::text[])`,
    timeZone: `SELECT zone AS time_zone, now() AT TIME ZONE zone AS probe
FROM (SELECT coalesce($1::text, current_setting('TimeZone')) AS zone) z`,
    lockSource: `LOCK TABLE ${state}, ${hierarchy}, ${lock} IN SHARE MODE`,
    liveLocks: `SELECT count(*)::int AS live, max(expires_at AT TIME ZONE $1::text) AS last_expiry
FROM ${lock} WHERE expires_at AT TIME ZONE $1::text > now()`,
    counts: `SELECT count(*)::int AS workflows, (count(*) FILTER (WHERE parent_subject IS NULL))::int AS roots,
  (count(*) FILTER (WHERE parent_subject IS NOT NULL))::int AS children
FROM ${state}`,
    present: `SELECT count(*)::int AS present FROM ${state} s WHERE EXISTS (SELECT 1 FROM ${target} t WHERE t.subject = s.subject)`,
    // The root: the hierarchy table's (kept even when the root's own record was cleaned up), else the
    // parent, else the subject itself. `orchestrator` is the prior art's `source`: arvo 3 passes the
    // orchestrator's name there. Naive timestamps are wall-clock time in zone $1.
    copy: `INSERT INTO ${target} AS t
  (subject, data, version, parent_subject, root_subject, status, execution_status, orchestrator, initiator,
   source, created_at, updated_at)
SELECT s.subject, s.data, s.version, s.parent_subject, coalesce(h.root_subject, s.parent_subject, s.subject),
  ${text('status')}, coalesce(${text('executionStatus')}, nullif(s.execution_status, 'unknown')),
  s.source, s.initiator, s.source,
  coalesce(s.created_at AT TIME ZONE $1::text, now()),
  coalesce(s.updated_at AT TIME ZONE $1::text, s.created_at AT TIME ZONE $1::text, now())
FROM ${state} s LEFT JOIN ${hierarchy} h ON h.subject = s.subject
ORDER BY s.created_at, s.subject
ON CONFLICT (subject) DO NOTHING
RETURNING t.subject`,
  };
}
