/**
 * migrateFromArvoTools against an `@arvo-tools/postgres` layout created with its exact DDL, holding
 * parent/child workflows written by the orchestrator fixture through a memory that behaves like the
 * prior art; then the migrated workflows are resumed and completed on this library's broker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import format from 'pg-format';
import { PostgresEventBroker } from '../../src/broker/index';
import {
  ArvoToolsMigrationError,
  connectPostgresMachineMemory,
  type IMachineMemory,
  migrateFromArvoTools,
  releasePostgresMachineMemory,
} from '../../src/memory/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { silentLogger } from '../../src/shared/logger';
import { waitFor } from '../broker/support';
import { arvoToolsMemory, createArvoToolsTables } from '../support/arvo-tools-layout';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase, testPool } from '../support/database';
import { deliverAll } from '../support/fixture-driver';
import {
  completionType,
  createInitEvent,
  createOrchestratorFixture,
  createServiceFixture,
  type FixtureHandler,
  serviceReplyType,
} from '../support/orchestrator';

/** Not UTC: naive timestamps read in the wrong zone would be 5.5 h off. */
const DATABASE_TIME_ZONE = 'Asia/Kolkata';

let db: TestDatabase;
let admin: ReturnType<typeof testPool>;

function orchestrators(memory: IMachineMemory<Record<string, any>>): FixtureHandler[] {
  return [
    createOrchestratorFixture({
      name: 'parent',
      memory,
      steps: [{ call: 'com.calc.add' }, { child: 'child' }, { call: 'com.calc.mul' }],
    }),
    createOrchestratorFixture({ name: 'child', memory, steps: [{ call: 'com.calc.mul' }] }),
    createOrchestratorFixture({ name: 'quick', memory, steps: [{ call: 'com.calc.add' }] }),
  ];
}

before(async () => {
  db = await createTestDatabase('memory_arvo_tools_migration');
  admin = testPool(db.url, 3);
  await admin.query(format('ALTER DATABASE %I SET timezone = %L', db.name, DATABASE_TIME_ZONE));
  await admin.query('DISCARD ALL');
});
after(() => closeAll(admin, db));

describe('migrateFromArvoTools', () => {
  it('copies parent/child workflows with versions, hierarchy and timestamps; refuses live locks; then they complete on the broker', async () => {
    // A prior-art installation with one workflow in flight (the parent waits for its child, the child
    // for com.calc.mul, whose call is not delivered yet) and one finished workflow.
    const legacy = testPool(db.url, 3);
    await createArvoToolsTables(legacy);
    const { rows: zone } = await legacy.query('SHOW TimeZone');
    assert.equal(zone[0].TimeZone, DATABASE_TIME_ZONE);
    const startedAt = Date.now();
    const old = arvoToolsMemory(legacy);
    const parentInit = createInitEvent('parent');
    const quickInit = createInitEvent('quick');
    const legacyRun = await deliverAll(
      [...orchestrators(old), createServiceFixture('com.calc.add')],
      [parentInit, quickInit],
    );
    const pendingCall = legacyRun.outbox.find((event) => event.to === 'com.calc.mul')!;
    assert.ok(pendingCall, 'the child waits for com.calc.mul');
    assert.deepEqual(legacyRun.outbox.map((event) => event.type).sort(), [
      completionType('quick'),
      'com.calc.mul',
    ]);
    const legacyRows = (
      await legacy.query(
        `SELECT s.subject, s.version, s.parent_subject, s.initiator, s.source, s.data, h.root_subject
         FROM arvopg_mm_state s JOIN arvopg_mm_hierarchy h USING (subject) ORDER BY s.created_at`,
      )
    ).rows;
    assert.equal(legacyRows.length, 3);
    const childRow = legacyRows.find((row) => row.parent_subject === parentInit.subject)!;
    const parentRow = legacyRows.find((row) => row.subject === parentInit.subject)!;
    assert.equal(childRow.version, 1);
    assert.equal(parentRow.version, 2, 'the parent was written twice: at init, then with the add reply');
    await legacy.query(
      `INSERT INTO arvopg_mm_lock (subject, locked_at, expires_at) VALUES ('expired', now() - interval '5 minutes', now() - interval '3 minutes')`,
    );
    // A worker of the old installation still holds a lock.
    await legacy.query(
      `INSERT INTO arvopg_mm_lock (subject, locked_at, expires_at) VALUES ($1, now(), now() + interval '2 minutes')`,
      [parentInit.subject],
    );

    const dryRun = await migrateFromArvoTools({ connectionString: db.url, dryRun: true });
    assert.deepEqual(
      { ...dryRun, lastLockExpiry: null },
      {
        dryRun: true,
        timeZone: DATABASE_TIME_ZONE,
        from: {
          state: 'public.arvopg_mm_state',
          lock: 'public.arvopg_mm_lock',
          hierarchy: 'public.arvopg_mm_hierarchy',
        },
        to: 'public.arvo_workflow_state',
        workflows: 3,
        roots: 2,
        children: 1,
        copied: 3,
        alreadyPresent: 0,
        liveLocks: 1,
        lastLockExpiry: null,
      },
    );
    // The live lock's expiry, read in the database's zone: two minutes from now.
    const expiresIn = dryRun.lastLockExpiry!.getTime() - Date.now();
    assert.ok(expiresIn > 60_000 && expiresIn <= 120_000, `expires in ${expiresIn} ms`);
    const tableAfterDryRun = await admin.query(`SELECT to_regclass('public.arvo_workflow_state') AS t`);
    assert.equal(tableAfterDryRun.rows[0].t, null, 'a dry run changes nothing');

    await assert.rejects(
      migrateFromArvoTools({ connectionString: db.url }),
      (error: unknown) =>
        error instanceof ArvoToolsMigrationError &&
        /1 workflow lock in public\.arvopg_mm_lock is still live/.test(error.message) &&
        /Stop every worker of the old installation/.test(error.message) &&
        /nothing was copied/.test(error.message),
    );
    assert.equal((await admin.query('SELECT count(*)::int AS n FROM arvo_workflow_state')).rows[0].n, 0);

    // The old worker stopped; its lock expired.
    await legacy.query(`UPDATE arvopg_mm_lock SET expires_at = now() - interval '1 second'`);
    const report = await migrateFromArvoTools({ connectionString: db.url });
    assert.equal(report.copied, 3);
    assert.equal(report.liveLocks, 0);
    const finishedAt = Date.now();

    const migrated = (
      await admin.query(
        `SELECT subject, version::int AS version, parent_subject, root_subject, status, execution_status,
                orchestrator, initiator, source, data, created_at, updated_at
         FROM arvo_workflow_state`,
      )
    ).rows;
    for (const legacyRow of legacyRows) {
      const row = migrated.find((r) => r.subject === legacyRow.subject)!;
      assert.ok(row, legacyRow.subject);
      assert.equal(row.version, legacyRow.version, 'version kept');
      assert.equal(row.parent_subject, legacyRow.parent_subject);
      assert.equal(row.root_subject, legacyRow.root_subject);
      assert.deepEqual(row.data, legacyRow.data);
      assert.equal(row.status, legacyRow.data.status);
      assert.equal(row.execution_status, legacyRow.data.executionStatus);
      assert.equal(row.orchestrator, legacyRow.source);
      assert.equal(row.initiator, legacyRow.initiator);
      assert.equal(row.source, legacyRow.source);
      for (const at of [row.created_at, row.updated_at] as Date[]) {
        // Naive wall-clock time of the database's zone, read back as the instant it was.
        assert.ok(
          at.getTime() >= startedAt - 5_000 && at.getTime() <= finishedAt + 5_000,
          `${at.toISOString()} not within the run (${new Date(startedAt).toISOString()} …)`,
        );
      }
    }
    assert.equal(migrated.find((r) => r.subject === childRow.subject)!.root_subject, parentInit.subject);
    assert.equal(migrated.find((r) => r.subject === quickInit.subject)!.status, 'done');

    // Idempotent: a second run copies nothing and changes nothing.
    const again = await migrateFromArvoTools({ connectionString: db.url });
    assert.equal(again.copied, 0);
    assert.equal(again.alreadyPresent, 3);
    assert.deepEqual(
      (await admin.query('SELECT subject, version::int AS version, data FROM arvo_workflow_state')).rows.sort(
        (a, b) => a.subject.localeCompare(b.subject),
      ),
      migrated
        .map(({ subject, version, data }) => ({ subject, version, data }))
        .sort((a, b) => a.subject.localeCompare(b.subject)),
    );
    await legacy.end();

    // The migrated workflow resumes on this library: deliver the call the old installation left pending.
    const memory = await connectPostgresMachineMemory({ connectionString: db.url, migrate: 'noop' });
    const broker = new PostgresEventBroker({ connectionString: db.url, logger: silentLogger });
    const completions = new Map<string, ArvoEvent>();
    try {
      for (const handler of [
        ...orchestrators(memory),
        createServiceFixture('com.calc.add'),
        createServiceFixture('com.calc.mul'),
      ]) {
        await broker.register(handler);
      }
      await broker.onWorkflowComplete({
        source: 'com.test.client',
        listener: (event) => void completions.set(event.subject, event),
      });
      await broker.start();
      await broker.dispatch(pendingCall);
      const done = await waitFor(
        'the migrated parent completes',
        () => completions.get(parentInit.subject),
        30_000,
      );
      assert.equal(done.type, completionType('parent'));
      const results = (done.data as { results: Array<{ type: string }> }).results.map((r) => r.type);
      assert.deepEqual(results, [
        serviceReplyType('com.calc.add'),
        completionType('child'),
        serviceReplyType('com.calc.mul'),
      ]);
      const parent = await memory.read(parentInit.subject);
      assert.equal(parent?.status, 'done');
      const version = (
        await admin.query('SELECT version::int AS version FROM arvo_workflow_state WHERE subject = $1', [
          parentInit.subject,
        ])
      ).rows[0].version;
      assert.ok(version > parentRow.version, 'versions continue from the migrated ones');
    } finally {
      await broker.stop({ timeoutMs: 5000 });
      await releasePostgresMachineMemory(memory);
    }
  });

  it('reads the naive timestamps in the zone given, and validates its options', async () => {
    const utc = await migrateFromArvoTools({ connectionString: db.url, dryRun: true, timeZone: 'UTC' });
    assert.equal(utc.timeZone, 'UTC');
    for (const [options, option] of [
      [{ timeZone: 'Mars/Olympus' }, 'timeZone'],
      [{ tables: { state: 'arvopg_mm_state' } }, 'tables'],
      [{ from: { tables: { history: 'h' } } }, 'from.tables.history'],
      [{ from: { schema: 'a b' } }, 'from.schema'],
      [{ dryrun: true }, 'dryrun'],
    ] as const) {
      await assert.rejects(
        migrateFromArvoTools({ connectionString: db.url, ...options } as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
    await assert.rejects(
      migrateFromArvoTools({ connectionString: db.url, from: { schema: 'elsewhere' } }),
      (error: unknown) =>
        error instanceof ArvoToolsMigrationError &&
        // (Not matching the package name: the test server's password is `postgres`, which is redacted.)
        /installation \(name its tables with from.schema \/ from.tables\)/.test(error.message) &&
        /table elsewhere\.arvopg_mm_state does not exist/.test(error.message),
    );
  });
});
