import { createHash } from 'node:crypto';
import { deleteHistoryOfDeletedCte } from '../history/sql';
import { jobLockSql, lockStatements } from '../lock/sql';
import { qualifiedName } from '../shared/identifiers';
import type { MemoryTables } from './migrations/v1';

/** A statement with a stable name, so node-postgres prepares it once per connection. */
export interface NamedStatement {
  name: string;
  text: string;
}

/** Every statement of the machine memory, built once per (schema, tables). */
export interface MemoryStatements {
  /** `$1` subject → `data`, `version`. */
  read: NamedStatement;
  /**
   * `$1` subject, `$2` owner, `$3` ttl in ms: the lock table's `acquire` (no row when another holder
   * has a live lock), plus the subject's record read in the same statement. `prefetched` is false
   * when the statement's snapshot holds a lock row of another holder, live at the statement's start:
   * that lock was released while the statement ran, so the record (`data`, `version`; both NULL when
   * there is none) may predate that holder's last write and is not returned.
   */
  lockAndRead: NamedStatement;
  /** `$1` subject → `locked`: whether this transaction took (or already held) the subject's job lock. */
  lockInJob: NamedStatement;
  /**
   * `$1` subject → the `lockAndRead` columns (no owner: the job's transaction holds the lock) with the
   * record, when no live lock row is held on it; no row otherwise. Sent after `lockInJob`, so its
   * snapshot sees every lock row committed before the job lock was taken.
   */
  readInJob: NamedStatement;
  /**
   * `$1` subject, `$2` data, `$3` parent subject, `$4` status, `$5` execution status, `$6` orchestrator,
   * `$7` initiator, `$8` source. Creates a record (version 1) whose root is the parent's root, or the
   * parent, or itself; returns no row when the subject exists.
   */
  insert: NamedStatement;
  /** Same parameters as `insert`; an existing row is overwritten and its version bumped (failure records). */
  insertOrOverwrite: NamedStatement;
  /**
   * `$1` subject, `$2` data, `$3` expected version, `$4` status, `$5` execution status, `$6` initiator,
   * `$7` source. Compare-and-swap on the version; returns no row on conflict.
   */
  updateByVersion: NamedStatement;
  /** As `updateByVersion`, but `$3` is the expected record (JSONB equality) instead of a version. */
  updateByContent: NamedStatement;
  /** `$1` subject → the subject and all its descendants deleted (`subject` per row), with their history. */
  deleteTree: NamedStatement;
  /**
   * `$1` subject → its whole tree deleted when it is a root with a finished status (the completion
   * policy `cleanup.onCompletion`); nothing otherwise (`subject` per deleted row).
   */
  deleteFinishedRootTree: NamedStatement;
  /** `$1` subject → `root_subject`. */
  rootOf: string;
  /** `$1` root subject → `subject` of every descendant in its tree (the root left out), oldest first. */
  subjectsByRoot: string;
  /** `$1` age in ms, `$2` max trees. Deletes whole trees whose root finished longer ago than `$1`. */
  sweepFinished: string;
  /** `$1` age in ms, `$2` max trees. Deletes whole trees with no write for longer than `$1`. */
  sweepAbandoned: string;
}

/** Statuses (arvo-xstate machine status or this memory's `status`) after which a workflow is finished. */
export const FINISHED_STATUSES = ['done', 'error', 'stopped', 'failure'] as const;

/**
 * SQL condition: the workflow row is finished (a finished status, or a failure record), never NULL.
 * The one definition used by the retention sweep and by operations tooling.
 */
export function finishedWorkflowSql(): string {
  const finished = FINISHED_STATUSES.map((status) => `'${status}'`).join(', ');
  return `((status IN (${finished})) IS TRUE OR (execution_status = 'failure') IS TRUE)`;
}

/** {@link finishedWorkflowSql} for a record about to be written (its extracted columns). */
export function isFinishedWorkflow(status: string | null, executionStatus: string | null): boolean {
  return (
    (status !== null && (FINISHED_STATUSES as readonly string[]).includes(status)) ||
    executionStatus === 'failure'
  );
}

export function memoryStatements(schema: string, tables: MemoryTables): MemoryStatements {
  const state = qualifiedName(schema, tables.state);
  const lock = qualifiedName(schema, tables.lock);
  // Every delete of records takes their event history along, in the same statement.
  const historyDeleted = deleteHistoryOfDeletedCte(schema, tables.history);
  // Prepared statement names are per connection; the hash keeps two memories on one pool apart
  // (both tables: `lockAndRead` uses the lock table too).
  const tag = createHash('sha256').update(`${state} ${lock}`).digest('hex').slice(0, 12);
  const named = (name: string, text: string): NamedStatement => ({
    name: `arvo_memory_${name}_${tag}`,
    text,
  });
  const insert = `INSERT INTO ${state} AS m
  (subject, data, version, parent_subject, root_subject, status, execution_status, orchestrator, initiator, source)
VALUES ($1, $2::jsonb, 1, $3,
  coalesce((SELECT p.root_subject FROM ${state} p WHERE p.subject = $3), $3, $1),
  $4, $5, $6, $7, $8)`;
  const update = `UPDATE ${state} SET
  data = $2::jsonb, version = version + 1, status = $4, execution_status = $5,
  initiator = coalesce($6, initiator), source = coalesce($7, source), updated_at = now()`;
  return {
    read: named('read', `SELECT data, version::text AS version FROM ${state} WHERE subject = $1`),
    // Every part of one statement sees the snapshot taken when it started, also after the INSERT
    // waited for a holder's release to commit: `held_before` tells whether that happened. Liveness
    // is judged at the statement's start (now(): the statement runs outside a transaction), not when
    // the CTE runs after that wait — by then the holder's TTL may have passed, and its lock would
    // look expired although its release (and last write) committed after our snapshot.
    lockAndRead: named(
      'lock_read',
      `WITH held_before AS (
  SELECT 1 FROM ${lock} WHERE key = $1 AND expires_at > now()
), acquired AS (
${lockStatements(schema, tables.lock).acquire}
)
SELECT a.key, a.owner, a.fencing_token, a.expires_at,
  NOT EXISTS (SELECT 1 FROM held_before) AS prefetched, s.data, s.version::text AS version
FROM acquired a
LEFT JOIN ${state} s ON s.subject = a.key AND NOT EXISTS (SELECT 1 FROM held_before)`,
    ),
    lockInJob: named('lock_job', `SELECT ${jobLockSql(lock, '$1::text')} AS locked`),
    readInJob: named(
      'read_job',
      `SELECT $1::text AS key, NULL::text AS owner, NULL::text AS fencing_token, NULL::timestamptz AS expires_at,
  true AS prefetched, s.data, s.version::text AS version
FROM (SELECT 1) AS one LEFT JOIN ${state} s ON s.subject = $1
WHERE NOT EXISTS (SELECT 1 FROM ${lock} WHERE key = $1 AND expires_at > clock_timestamp())`,
    ),
    insert: named(
      'insert',
      `${insert}
ON CONFLICT (subject) DO NOTHING
RETURNING version::text AS version`,
    ),
    insertOrOverwrite: named(
      'overwrite',
      `${insert}
ON CONFLICT (subject) DO UPDATE SET
  data = EXCLUDED.data, version = m.version + 1, status = EXCLUDED.status,
  execution_status = EXCLUDED.execution_status, initiator = coalesce(EXCLUDED.initiator, m.initiator),
  source = coalesce(EXCLUDED.source, m.source), updated_at = now()
RETURNING version::text AS version`,
    ),
    updateByVersion: named(
      'cas_version',
      `${update}
WHERE subject = $1 AND version = $3::bigint
RETURNING version::text AS version`,
    ),
    updateByContent: named(
      'cas_content',
      `${update}
WHERE subject = $1 AND data = $3::jsonb
RETURNING version::text AS version`,
    ),
    deleteTree: named(
      'delete_tree',
      `WITH RECURSIVE tree(subject) AS (
  SELECT subject FROM ${state} WHERE subject = $1
  UNION
  SELECT c.subject FROM ${state} c JOIN tree t ON c.parent_subject = t.subject
), deleted AS (
  DELETE FROM ${state} WHERE subject IN (SELECT subject FROM tree) OR root_subject = $1
  RETURNING subject
), ${historyDeleted}
SELECT subject FROM deleted`,
    ),
    deleteFinishedRootTree: named(
      'delete_finished_root',
      `WITH deleted AS (
  DELETE FROM ${state} WHERE root_subject = (
    SELECT subject FROM ${state} WHERE subject = $1 AND root_subject = $1 AND ${finishedWorkflowSql()}
  )
  RETURNING subject
), ${historyDeleted}
SELECT subject FROM deleted`,
    ),
    rootOf: `SELECT root_subject FROM ${state} WHERE subject = $1`,
    subjectsByRoot: `SELECT subject FROM ${state} WHERE root_subject = $1 AND subject <> $1 ORDER BY created_at, subject`,
    sweepFinished: `WITH roots AS (
  SELECT subject FROM ${state}
  WHERE subject = root_subject
    AND ${finishedWorkflowSql()}
    AND updated_at < now() - $1::bigint * interval '1 millisecond'
  LIMIT $2
), deleted AS (
  DELETE FROM ${state} WHERE root_subject IN (SELECT subject FROM roots)
  RETURNING subject, root_subject
), ${historyDeleted}
SELECT root_subject FROM deleted`,
    sweepAbandoned: `WITH roots AS (
  SELECT DISTINCT o.root_subject FROM ${state} o
  WHERE o.updated_at < now() - $1::bigint * interval '1 millisecond'
    AND NOT EXISTS (
      SELECT 1 FROM ${state} n
      WHERE n.root_subject = o.root_subject AND n.updated_at >= now() - $1::bigint * interval '1 millisecond'
    )
  LIMIT $2
), deleted AS (
  DELETE FROM ${state} WHERE root_subject IN (SELECT root_subject FROM roots)
  RETURNING subject, root_subject
), ${historyDeleted}
SELECT root_subject FROM deleted`,
  };
}
