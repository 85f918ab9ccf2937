/**
 * The event history's `root_subject` (layout version 2): the migration from a version 1 table with
 * rows backfills it, and reading a whole tree by its root is an index range scan.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { historyMigrationV1 } from '../../src/history/migrations/v1';
import { historyComponent } from '../../src/history/schema';
import { deleteHistoryOfDeletedCte, historyStatements } from '../../src/history/sql';
import { applyMigrations, indexProblems } from '../../src/shared/migrations';
import { useTestDatabase } from '../broker/support';

const TABLE = 'arvo_event_history';
const COMPONENT = `history:${TABLE}`;

/** A version 1 row: subject, event id, the ids it produced, and its payload when payloads were kept. */
type V1Row = [subject: string, eventId: string, produced: string[], payload?: unknown];

describe('event history: root_subject', () => {
  const suite = useTestDatabase('history_root_subject');

  it('migrates a version 1 table with rows to version 2, backfilling each row’s root', async () => {
    const { pool } = suite;
    await applyMigrations(pool, {
      schema: 'public',
      component: COMPONENT,
      migrations: [historyMigrationV1('public', TABLE)],
    });
    const rows: V1Row[] = [
      // A parent R that calls a service, starts child C, which starts grandchild G; C's completion
      // travels with R's subject (so C's rows also produced an event of R: not C's parent).
      ['R', 'r-init', ['r-call', 'c-init']],
      ['R', 'r-call', []],
      ['C', 'c-init', ['c-call', 'g-init']],
      ['G', 'g-init', ['g-done']],
      ['C', 'g-done', ['c-done']],
      ['C', 'c-call', []],
      ['R', 'c-done', []],
      // A root started by R's handler: its payload says it has no parent, which wins over producers.
      ['S', 's-init', [], { parentSubject$$: null }],
      // A child whose parent's rows are gone (swept): its root is the parent it names.
      ['T', 't-init', [], { parentSubject$$: 'gone-parent' }],
      // A plain event of no workflow.
      ['plain', 'p-1', []],
    ];
    rows[0]![2].push('s-init');
    for (const [subject, eventId, produced, payload] of rows) {
      await pool.query(
        `INSERT INTO ${TABLE} (subject, event_id, queue, attempt, outcome, started_at, ended_at, duration_ms, produced, payload)
         VALUES ($1, $2, 'q', 1, 'handled', now(), now(), 0, $3, $4)`,
        [subject, eventId, produced, payload === undefined ? null : JSON.stringify(payload)],
      );
    }
    const { component, migrations } = historyComponent('public', TABLE);
    assert.equal(await applyMigrations(pool, { schema: 'public', component, migrations }), 2);
    const { rows: migrated } = await pool.query(`SELECT event_id, root_subject FROM ${TABLE} ORDER BY id`);
    assert.deepEqual(Object.fromEntries(migrated.map((row) => [row.event_id, row.root_subject])), {
      'r-init': 'R',
      'r-call': 'R',
      'c-init': 'R',
      'g-init': 'R',
      'g-done': 'R',
      'c-call': 'R',
      'c-done': 'R',
      's-init': 'S',
      't-init': 'gone-parent',
      'p-1': 'plain',
    });
    assert.deepEqual(await indexProblems(pool, 'public', migrations[1]!.indexes), []);
    // Applying again changes nothing.
    assert.equal(await applyMigrations(pool, { schema: 'public', component, migrations }), 2);
  });

  it('reads the timeline of one tree by an index range scan of (root_subject, id)', async () => {
    const { pool } = suite;
    const { component, migrations } = historyComponent('public', TABLE);
    await applyMigrations(pool, { schema: 'public', component, migrations });
    // 200,000 rows in 20,000 trees.
    await pool.query(`INSERT INTO ${TABLE}
        (subject, root_subject, event_id, queue, attempt, outcome, started_at, ended_at, duration_ms)
      SELECT 'wf-' || (i % 40000), 'root-' || (i % 20000), gen_random_uuid()::text, 'q', 1, 'handled',
        now(), now(), 0
      FROM generate_series(1, 200000) AS i`);
    await pool.query(`ANALYZE ${TABLE}`);
    const { timeline } = historyStatements({
      schema: 'public',
      stateTable: 'arvo_workflow_state',
      historyTable: TABLE,
      pgBossSchema: 'pgboss',
    });
    const { rows } = await pool.query(`EXPLAIN ${timeline}`, ['root-4711', 500]);
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    assert.match(
      plan,
      /Index Scan.* on arvo_event_history_root_subject_id_idx|Index Scan Backward using arvo_event_history_root_subject_id_idx/,
      plan,
    );
    assert.doesNotMatch(plan, /Seq Scan/, plan);
    // The memory's deletes take the history by subject and by root, by both indexes.
    const { rows: deletion } = await pool.query(
      `EXPLAIN WITH deleted AS (SELECT 'wf-4711'::text AS subject), ${deleteHistoryOfDeletedCte('public', TABLE)} SELECT 1`,
    );
    const deletePlan = deletion.map((row) => row['QUERY PLAN']).join('\n');
    assert.match(deletePlan, /arvo_event_history_subject_id_idx/, deletePlan);
    assert.match(deletePlan, /arvo_event_history_root_subject_id_idx/, deletePlan);
    assert.doesNotMatch(deletePlan, /Seq Scan on arvo_event_history/, deletePlan);
  });
});
