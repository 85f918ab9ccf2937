import { deadLetterQueuesCte } from '../broker/sql';
import { qualifiedName, quoteIdentifier } from '../shared/identifiers';

/** A statement with a stable name, so node-postgres prepares it once per connection. */
export interface NamedStatement {
  name: string;
  text: string;
}

/** The event history's statements and the workflow reads over it, built once per set of tables. */
export interface HistoryStatements {
  /**
   * `$1` root subject, `$2` limit → the latest `$2` entries of the tree of that root, oldest first
   * (an index range scan of `(root_subject, id)`).
   */
  timeline: string;
  /** `$1` event id → `subject` and `root_subject` of the entries of that event, at most 10. */
  subjectsOfEvent: string;
  /**
   * `$1` status, `$2` orchestrator, `$3 text[]` subjects, `$4` updated before, `$5` updated at or
   * after, `$9` root subject (each null = no filter), `$6` cursor `updated_at` (text, exact), `$7`
   * cursor subject, `$8` limit → records, most recently updated first (keyset pagination on `updated_at, subject`, an
   * index range scan of `(updated_at)`, `(status, updated_at)` or `(orchestrator, updated_at)`).
   */
  workflows: string;
  /** `$1` subject → the record with its columns. */
  workflow: string;
  /** `$1` root subject, `$2` limit → the records of the tree (without `data`), oldest first. */
  tree: string;
  /**
   * `$1 text[]` dead-letter queue names (as `DeadLetters`), `$2 text[]` subjects, `$3` limit → `id`
   * of the waiting dead letters whose event has one of these subjects, oldest first.
   */
  deadLettersOfSubjects: string;
}

/** Where the workflows are read from: the memory's tables, the history table and pg-boss's schema. */
export interface WorkflowTables {
  schema: string;
  stateTable: string;
  historyTable: string;
  pgBossSchema: string;
}

const RECORD_COLUMNS = `subject, parent_subject, root_subject, status, execution_status, orchestrator, initiator,
  source, version::text AS version, created_at, updated_at, updated_at::text AS updated_cursor`;

/** The history's columns as the read statements return them. */
const ENTRY_COLUMNS = `id, subject, root_subject, event_id, event_type, source, destination, queue, attempt, outcome,
  started_at, ended_at, duration_ms, error, produced, traceparent, payload`;

export function historyStatements(names: WorkflowTables): HistoryStatements {
  const { schema, historyTable: table } = names;
  const history = qualifiedName(schema, table);
  const state = qualifiedName(schema, names.stateTable);
  const job = `${quoteIdentifier(names.pgBossSchema)}.job`;
  return {
    timeline: `SELECT * FROM (
  SELECT ${ENTRY_COLUMNS} FROM ${history} WHERE root_subject = $1 ORDER BY id DESC LIMIT $2
) latest ORDER BY id`,
    subjectsOfEvent: `SELECT DISTINCT subject, root_subject FROM ${history} WHERE event_id = $1 LIMIT 10`,
    workflows: `SELECT ${RECORD_COLUMNS} FROM ${state}
  WHERE ($1::text IS NULL OR status = $1)
    AND ($2::text IS NULL OR orchestrator = $2)
    AND ($3::text[] IS NULL OR subject = ANY($3::text[]))
    AND ($4::timestamptz IS NULL OR updated_at < $4)
    AND ($5::timestamptz IS NULL OR updated_at >= $5)
    AND ($6::timestamptz IS NULL OR (updated_at, subject) < ($6::timestamptz, $7::text))
    AND ($9::text IS NULL OR root_subject = $9)
  ORDER BY updated_at DESC, subject DESC
  LIMIT $8`,
    workflow: `SELECT ${RECORD_COLUMNS}, data FROM ${state} WHERE subject = $1`,
    tree: `SELECT ${RECORD_COLUMNS} FROM ${state} WHERE root_subject = $1 ORDER BY created_at, subject LIMIT $2`,
    deadLettersOfSubjects: `WITH ${deadLetterQueuesCte(names.pgBossSchema)}
  SELECT j.id FROM ${job} j
  WHERE j.name IN (SELECT name FROM dead_letter_queues) AND j.state IN ('created', 'retry')
    AND j.data->>'subject' = ANY($2::text[])
  ORDER BY j.created_on, j.id
  LIMIT $3`,
  };
}

/**
 * `$1` JSON array of entries (the columns by name, `produced` a string array, `parent_subject` the
 * event's `parentSubject$$`) → inserted into the history table `table` of `schema`, in one statement
 * (named: prepared once per connection). `root_subject` is computed as the memory computes it: the
 * root already recorded for the subject, else its parent's recorded root, else the parent, else the
 * subject itself (a child's first event, its init, names the parent; a parent's rows come first).
 */
export function historyInsertStatement(schema: string, table: string): NamedStatement {
  const history = qualifiedName(schema, table);
  const rootOf = (subject: string) =>
    `(SELECT h.root_subject FROM ${history} h WHERE h.subject = ${subject} AND h.root_subject IS NOT NULL ORDER BY h.id LIMIT 1)`;
  return {
    name: `arvo_history_insert_${schema}_${table}`.slice(0, 63),
    text: `INSERT INTO ${history} (subject, root_subject, event_id, event_type, source, destination, queue, attempt,
  outcome, started_at, ended_at, duration_ms, error, produced, traceparent, payload)
SELECT e.subject, coalesce(${rootOf('e.subject')}, ${rootOf('e.parent_subject')}, e.parent_subject, e.subject),
  e.event_id, e.event_type, e.source, e.destination, e.queue, e.attempt, e.outcome,
  e.started_at, e.ended_at, e.duration_ms, e.error,
  ARRAY(SELECT jsonb_array_elements_text(e.produced)), e.traceparent, e.payload
FROM jsonb_to_recordset($1::jsonb) AS e(subject text, parent_subject text, event_id text, event_type text,
  source text, destination text, queue text, attempt integer, outcome text, started_at timestamptz,
  ended_at timestamptz, duration_ms integer, error jsonb, produced jsonb, traceparent text, payload jsonb)`,
  };
}

/**
 * `$1` age in seconds, `$2` batch size → deletes those of the `$2` oldest entries (by id, which
 * follows time) older than `$1`; reads `$2` rows of the primary key at most, however large the table.
 */
export function historySweepStatement(schema: string, table: string): string {
  const history = qualifiedName(schema, table);
  return `DELETE FROM ${history} WHERE id IN (
  SELECT id FROM (SELECT id, started_at FROM ${history} ORDER BY id LIMIT $2) oldest
  WHERE started_at < now() - $1::int * interval '1 second'
)`;
}

/**
 * A data-modifying CTE named `history_deleted` that deletes the history of the subjects the CTE
 * `deleted` returned (a column `subject`), and of every tree whose root is among them (also rows of
 * subjects without a record): how the memory's deletes take a tree's history along in the same
 * statement. The subjects as one array keep both conditions index scans (a BitmapOr).
 */
export function deleteHistoryOfDeletedCte(schema: string, table: string): string {
  return `history_deleted AS (DELETE FROM ${qualifiedName(schema, table)}
  WHERE subject = ANY(ARRAY(SELECT subject FROM deleted)) OR root_subject = ANY(ARRAY(SELECT subject FROM deleted)))`;
}
