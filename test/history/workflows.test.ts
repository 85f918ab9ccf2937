import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { Workflows } from '../../src/history/workflows';
import { connectPostgresMachineMemory } from '../../src/memory/index';
import { openTestDatabase } from '../broker/support';
import { cli } from '../cli/run-cli';
import { LEAKED_PASSWORD, startWorkflowWorld, type WorkflowWorld } from '../dashboard/support';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';

const TABLES = {
  schema: 'public',
  stateTable: 'arvo_workflow_state',
  historyTable: 'arvo_event_history',
  pgBossSchema: 'pgboss',
  deadLetterQueues: ['arvo.dead-letter'],
};

describe('Workflows: a workflow with its tree, dead letters and event history', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let world: WorkflowWorld;
  let workflows: Workflows;

  before(async () => {
    ({ db, pool } = await openTestDatabase('history_workflows'));
    world = await startWorkflowWorld(db, 2);
    workflows = new Workflows(pool, TABLES);
  });

  after(async () => {
    await world?.stop();
    await closeAll(pool, db);
  });

  it('getWorkflow: the record, its parent and children, its dead letters and the timeline across the tree', async () => {
    const init = world.inits[0]!;
    const detail = (await workflows.getWorkflow(init.subject))!;
    assert.equal(detail.record.subject, init.subject);
    assert.equal(detail.parent, null);
    assert.equal(detail.children.length, 1);
    const child = detail.children[0]!;
    assert.equal(child.orchestrator, 'arvo.orc.dashchild');
    assert.deepEqual(
      detail.tree.map((record) => record.subject),
      [init.subject, child.subject],
    );
    assert.equal(detail.deadLetters.length, 1);
    const subjects = new Set(detail.timeline.map((entry) => entry.subject));
    assert.ok(subjects.has(init.subject) && subjects.has(child.subject), 'the timeline spans the tree');
    const handled = detail.timeline.filter((entry) => entry.kind === 'handled');
    assert.ok(
      handled.some((entry) => entry.eventId === init.id),
      'the init event was handled',
    );
    const dead = detail.timeline.find((entry) => entry.kind === 'dead-lettered')!;
    assert.equal(dead.eventType, 'com.dash.flaky');
    assert.match(dead.error!, /cannot reach/);
    assert.ok(!JSON.stringify(detail).includes(LEAKED_PASSWORD), 'no secret');
    const times = detail.timeline.map((entry) => entry.at.getTime());
    assert.deepEqual(
      times,
      [...times].sort((a, b) => a - b),
      'oldest first',
    );

    // The child's page has the same tree, with the parent.
    const ofChild = (await workflows.getWorkflow(child.subject))!;
    assert.equal(ofChild.parent?.subject, init.subject);
    // Any event of the tree finds it: the init event, and an event the child handled.
    assert.equal((await workflows.getWorkflow(init.id))?.record.subject, init.subject);
    const childEvent = detail.timeline.find((entry) => entry.subject === child.subject)!.eventId!;
    assert.equal((await workflows.getWorkflow(childEvent))?.record.subject, child.subject);
    assert.equal(await workflows.getWorkflow('no-such-subject'), null);
  });

  it('a parent orchestrator that starts a child writes one tree of history rows under the parent’s subject', async () => {
    const init = world.inits[0]!;
    const detail = (await workflows.getWorkflow(init.subject))!;
    const child = detail.children[0]!;
    const { rows } = await pool.query(
      'SELECT subject, root_subject, event_type FROM arvo_event_history WHERE subject = ANY($1) ORDER BY id',
      [[init.subject, child.subject]],
    );
    assert.ok(rows.some((row) => row.subject === child.subject && row.event_type === 'arvo.orc.dashchild'));
    assert.deepEqual(new Set(rows.map((row) => row.root_subject)), new Set([init.subject]), 'one root');
    assert.equal(child.rootSubject, init.subject, 'the memory agrees');
    // The tree is every row with that root: the timeline holds them all, and no other tree's.
    const { rows: ofRoot } = await pool.query(
      'SELECT count(*)::int AS n FROM arvo_event_history WHERE root_subject = $1',
      [init.subject],
    );
    assert.equal(detail.timeline.filter((entry) => entry.eventId).length, ofRoot[0].n);
    assert.equal(ofRoot[0].n, rows.length);
    // An event of a subject without a record (here: the child's, once its record is gone) finds the tree's root.
    const childEvent = rows.find((row) => row.subject === child.subject)!;
    const { rows: ids } = await pool.query(
      'SELECT event_id FROM arvo_event_history WHERE subject = $1 AND event_type = $2',
      [child.subject, childEvent.event_type],
    );
    await pool.query('UPDATE arvo_workflow_state SET subject = subject || $2 WHERE subject = $1', [
      child.subject,
      '-renamed',
    ]);
    try {
      assert.equal((await workflows.getWorkflow(ids[0].event_id))?.record.subject, init.subject);
    } finally {
      await pool.query('UPDATE arvo_workflow_state SET subject = $1 WHERE subject = $1 || $2', [
        child.subject,
        '-renamed',
      ]);
    }
    // The whole tree by its root, in the API and on the command line.
    const tree = await workflows.listWorkflows({ root: init.subject, limit: 10 });
    assert.deepEqual(
      new Set(tree.records.map((record) => record.subject)),
      new Set([init.subject, child.subject]),
    );
    const listed = await cli(['workflows', 'list', '--root', init.subject, '--json', '--url', db.url]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(JSON.parse(listed.stdout).records.length, 2);
  });

  it('listWorkflows: filters by status, orchestrator, time and search, a keyset page at a time', async () => {
    const parents = await workflows.listWorkflows({ orchestrator: 'arvo.orc.dashparent', limit: 1 });
    assert.equal(parents.records.length, 1);
    assert.ok(parents.next);
    const second = await workflows.listWorkflows({
      orchestrator: 'arvo.orc.dashparent',
      limit: 1,
      cursor: parents.next!,
    });
    assert.equal(second.records.length, 1);
    assert.equal(second.next, null);
    assert.deepEqual(
      new Set([parents.records[0]!.subject, second.records[0]!.subject]),
      new Set(world.inits.map((init) => init.subject)),
    );
    const future = new Date(Date.now() + 60_000);
    assert.equal((await workflows.listWorkflows({ updatedAfter: future, limit: 10 })).records.length, 0);
    assert.equal((await workflows.listWorkflows({ updatedBefore: future, limit: 10 })).records.length, 4);
    const bySearch = await workflows.listWorkflows({ search: world.inits[1]!.id, limit: 10 });
    assert.deepEqual(
      bySearch.records.map((record) => record.subject),
      [world.inits[1]!.subject],
    );
    const status = parents.records[0]!.status!;
    const byStatus = await workflows.listWorkflows({
      status,
      orchestrator: 'arvo.orc.dashparent',
      limit: 10,
    });
    assert.ok(byStatus.records.every((record) => record.status === status));
  });

  it('workflows show / list on the command line print the tree and the timeline', async () => {
    const init = world.inits[0]!;
    const shown = await cli(['workflows', 'show', init.id, '--url', db.url]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.ok(shown.stdout.startsWith(`subject:       ${init.subject}\n`), shown.stdout);
    assert.match(shown.stdout, /^tree \(2 records\):$/m);
    assert.match(shown.stdout, /^ {4}\S+ {2}arvo\.orc\.dashchild /m, 'the child, indented under the root');
    assert.match(shown.stdout, /^dead letters \(1\):$/m);
    assert.match(shown.stdout, /dead-lettered +com\.dash\.flaky/);
    assert.ok(!shown.stdout.includes(LEAKED_PASSWORD));
    const json = await cli(['workflows', 'show', init.subject, '--json', '--url', db.url]);
    assert.equal(JSON.parse(json.stdout).record.subject, init.subject);
    const missing = await cli(['workflows', 'show', 'nothing-here', '--url', db.url]);
    assert.equal(missing.code, 1);
    const listed = await cli(['workflows', 'list', '--orchestrator', 'arvo.orc.dashchild', '--url', db.url]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(listed.stdout.match(/arvo\.orc\.dashchild/g)?.length, 2);
    const usage = await cli(['workflows', 'list', '--updated-before', 'yesterday', '--url', db.url]);
    assert.equal(usage.code, 2);
  });

  it('deleteWorkflow takes the history of the tree along', async () => {
    const init = world.inits[1]!;
    const subjects = (await workflows.getWorkflow(init.subject))!.tree.map((record) => record.subject);
    const count = async () =>
      (
        await pool.query('SELECT count(*)::int AS n FROM arvo_event_history WHERE subject = ANY($1)', [
          subjects,
        ])
      ).rows[0].n;
    assert.ok((await count()) > 0);
    // A row of the tree whose subject has no record (a child init that failed before its first write).
    await pool.query(
      `INSERT INTO arvo_event_history (subject, root_subject, event_id, queue, attempt, outcome, started_at, ended_at, duration_ms)
       VALUES ('child-without-record', $1, gen_random_uuid()::text, 'q', 1, 'dead-lettered', now(), now(), 0)`,
      [init.subject],
    );
    await world.memory.deleteWorkflow(init.subject);
    assert.equal(await count(), 0);
    const { rows: orphans } = await pool.query(
      "SELECT count(*)::int AS n FROM arvo_event_history WHERE subject = 'child-without-record'",
    );
    assert.equal(orphans[0].n, 0, 'the whole tree by its root');
    assert.ok(
      (await pool.query('SELECT count(*)::int AS n FROM arvo_event_history')).rows[0].n > 0,
      'other workflows keep theirs',
    );
  });
});

describe('Workflows.list over 1,000,000 workflow records', () => {
  let db: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    ({ db, pool } = await openTestDatabase('history_million'));
    const memory = await connectPostgresMachineMemory({ pool });
    await memory.close();
    await pool.query(`INSERT INTO arvo_workflow_state
        (subject, data, version, root_subject, status, orchestrator, created_at, updated_at)
      SELECT 'wf-' || i, '{}'::jsonb, 1, 'wf-' || i,
        (ARRAY['active', 'done', 'failure'])[1 + i % 3],
        CASE WHEN i % 1000 = 0 THEN 'arvo.orc.rare' ELSE 'arvo.orc.common' END,
        now() - i * interval '1 second', now() - i * interval '1 second'
      FROM generate_series(1, 1000000) AS i`);
    await pool.query('ANALYZE arvo_workflow_state');
  });

  after(() => closeAll(pool, db));

  it('answers every filter by an index range scan, fast', async () => {
    const workflows = new Workflows(pool, TABLES);
    const hour = new Date(Date.now() - 3_600_000);
    const filters = [
      { limit: 50 },
      { status: 'done', limit: 50 },
      { orchestrator: 'arvo.orc.rare', limit: 50 },
      { status: 'active', updatedBefore: hour, limit: 50 },
      { updatedAfter: hour, limit: 50 },
      { search: 'wf-500000', limit: 50 },
    ];
    for (const filter of filters) {
      const first = await workflows.listWorkflows(filter);
      assert.ok(first.records.length > 0, JSON.stringify(filter));
      const started = performance.now();
      const page = await workflows.listWorkflows({ ...filter, cursor: first.next ?? undefined });
      const ms = performance.now() - started;
      assert.ok(ms < 500, `${JSON.stringify(filter)}: ${ms.toFixed(0)} ms`);
      if (first.next) assert.ok(page.records.length > 0);
    }
    // The plan of the slowest shape without an index would be a sort of a million rows.
    const { rows } = await pool.query(
      `EXPLAIN SELECT subject FROM arvo_workflow_state WHERE orchestrator = 'arvo.orc.rare'
         AND (updated_at, subject) < (now(), 'z') ORDER BY updated_at DESC, subject DESC LIMIT 51`,
    );
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    assert.match(plan, /Index Scan.*orchestrator_updated_at_idx/, plan);
    assert.doesNotMatch(plan, /Seq Scan/, plan);
  });
});
