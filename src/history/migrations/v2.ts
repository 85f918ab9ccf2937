import { qualifiedName } from '../../shared/identifiers';
import { createIndexSql, indexOn, type Migration, type MigrationColumn } from '../../shared/migrations';
import { HISTORY_COLUMNS_V1 } from './v1';

const ROOT_SUBJECT: MigrationColumn = {
  name: 'root_subject',
  definition: 'text',
  type: 'text',
  nullable: true,
};

/** Columns of the event history in layout version 2: version 1's and `root_subject`. */
export const HISTORY_COLUMNS_V2: readonly MigrationColumn[] = [...HISTORY_COLUMNS_V1, ROOT_SUBJECT];

/**
 * Fills `root_subject` of the rows written before version 2, from what the rows themselves hold.
 * A subject's parent is named by its first recorded event: `parentSubject$$` of its payload when
 * payloads were kept (a key with null: a root), otherwise the other subject whose row produced that
 * event (a parent orchestrator emits its child's init event). As at insert, a subject's root is its
 * parent's root, else its parent (when that has no rows), else itself; the recursion walks down from
 * the tops. A second statement makes any row still unreached (a cycle: none in practice) its own root.
 */
function backfillSql(history: string): string[] {
  const rootsByChain = `WITH RECURSIVE firsts AS (
  SELECT DISTINCT ON (subject) subject, event_id, payload FROM ${history} ORDER BY subject, id
), producers AS (
  SELECT f.subject, min(p.subject) AS parent
  FROM firsts f
  JOIN (SELECT subject, unnest(produced) AS event_id FROM ${history}) p
    ON p.event_id = f.event_id AND p.subject <> f.subject
  GROUP BY f.subject
), parents AS (
  SELECT f.subject,
    CASE WHEN f.payload ? 'parentSubject$$' THEN f.payload->>'parentSubject$$' ELSE pr.parent END AS parent
  FROM firsts f LEFT JOIN producers pr ON pr.subject = f.subject
), chain(subject, root) AS (
  SELECT p.subject, coalesce(p.parent, p.subject) FROM parents p
  WHERE p.parent IS NULL OR p.parent = p.subject OR NOT EXISTS (SELECT 1 FROM firsts f WHERE f.subject = p.parent)
  UNION
  SELECT p.subject, c.root FROM parents p JOIN chain c ON p.parent = c.subject AND p.parent <> p.subject
)
UPDATE ${history} h SET root_subject = c.root FROM chain c WHERE c.subject = h.subject AND h.root_subject IS NULL`;
  return [rootsByChain, `UPDATE ${history} SET root_subject = subject WHERE root_subject IS NULL`];
}

/**
 * Event history layout version 2: `root_subject`, the root of the workflow tree a row belongs to
 * (what the memory's state table calls `root_subject`), filled at insert and backfilled here, with an
 * index on `(root_subject, id)`: the timeline of a whole tree is one index range scan. Nullable, so a
 * broker of an earlier release still inserts during a rolling upgrade (its rows have no root).
 */
export function historyMigrationV2(schema: string, table: string): Migration {
  const history = qualifiedName(schema, table);
  const index = indexOn(table, ['root_subject', 'id']);
  return {
    version: 2,
    description: `event history table ${table}: root_subject (backfilled), index on (root_subject, id)`,
    statements: [
      `ALTER TABLE ${history} ADD COLUMN IF NOT EXISTS ${ROOT_SUBJECT.name} ${ROOT_SUBJECT.definition}`,
      ...backfillSql(history),
      createIndexSql(schema, index),
    ],
    indexes: [index],
  };
}
