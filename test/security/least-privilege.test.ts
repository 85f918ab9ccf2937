/**
 * Least privilege: an admin role creates the schemas and tables from exported DDL, as SECURITY.md shows
 * (`memoryMigrationSql()`, `pgBossSchemaSql()`, `brokerMigrationSql()`); the application then runs as a
 * real restricted role holding exactly the GRANTs listed in SECURITY.md (read from the file), with
 * `migrate: false` (broker) and `migrate: 'noop'` (memory). A workflow completes, `doctor` passes;
 * DDL is refused for that role.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import pg from 'pg';
import { brokerMigrationSql, PostgresEventBroker, pgBossSchemaSql } from '../../src/broker/index';
import {
  connectPostgresMachineMemory,
  memoryMigrationSql,
  type PostgresMachineMemory,
} from '../../src/memory/index';
import { memoryLogger, waitFor } from '../broker/support';
import { runCliInProcess } from '../support/cli';
import { closeAll } from '../support/close';
import { createTestDatabase, createTestRole, type TestDatabase } from '../support/database';
import { createInitEvent, createOrchestratorFixture, createServiceFixture } from '../support/orchestrator';

const ROLE = `app_${randomBytes(4).toString('hex')}`;
const PASSWORD = `app-${randomBytes(8).toString('hex')}`;

/**
 * The GRANT statements of SECURITY.md ("Least privilege"), read from the file itself so that the
 * document cannot drift from what this test proves, with `app_user` replaced by `role`.
 */
function applicationGrants(role: string): string[] {
  const security = readFileSync(new URL('../../SECURITY.md', import.meta.url), 'utf8');
  const grants = security
    .split('\n')
    .map((line) => line.replace(/--.*$/, '').trim())
    // The application role's list (the dashboard's role has a list of its own).
    .filter((line) => line.startsWith('GRANT ') && line.endsWith(' TO app_user;'))
    .map((line) => line.replace(/;$/, '').replaceAll('app_user', role));
  assert.ok(grants.length >= 5, 'SECURITY.md lists the GRANTs');
  return grants;
}

describe('least privilege: the application runs as a role without DDL rights', () => {
  let db: TestDatabase;
  let adminUrl: string;
  let appUrl: string;
  let broker: PostgresEventBroker | undefined;
  let memory: PostgresMachineMemory | undefined;
  const logger = memoryLogger();

  before(async () => {
    db = await createTestDatabase('sec_least_privilege');
    adminUrl = db.url;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      // PostgreSQL < 15 lets every role create in `public`; make the test mean the same everywhere.
      await admin.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
      await admin.query(memoryMigrationSql());
      await admin.query(pgBossSchemaSql());
      await admin.query(brokerMigrationSql());
      appUrl = await createTestRole(db, { name: ROLE, password: PASSWORD });
      for (const grant of applicationGrants(ROLE)) await admin.query(grant);
    } finally {
      await admin.end();
    }
  });

  after(() => closeAll(broker, memory, db));

  it('completes a workflow with only the documented GRANTs', async () => {
    memory = await connectPostgresMachineMemory({ connectionString: appUrl, migrate: 'noop', logger });
    broker = new PostgresEventBroker({
      connectionString: appUrl,
      migrate: false,
      logger,
      maintenanceIntervalSeconds: 1,
    });
    await broker.register(
      createOrchestratorFixture({
        name: 'lp',
        memory,
        steps: [{ call: 'com.lp.svc' }, { fanOut: 'com.lp.fan', count: 2 }],
      }),
    );
    await broker.register(createServiceFixture('com.lp.svc'));
    await broker.register(createServiceFixture('com.lp.fan'));
    const done: ArvoEvent[] = [];
    await broker.onWorkflowComplete({
      source: 'com.test.client',
      listener: (event) => void done.push(event),
    });
    await broker.start();
    const init = createInitEvent('lp');
    await broker.dispatch(init);
    await waitFor('the workflow completes', () => done.length === 1, 30_000);
    assert.equal((done[0]!.data as { status: string }).status, 'done');
    assert.equal(((await memory.read(init.subject)) as { status: string }).status, 'done');
    // Queue control writes the broker's own table: the GRANTs cover it.
    await broker.pauseQueue('com.lp.svc');
    assert.equal((await broker.getStats({ queues: ['com.lp.svc'] }))[0]?.paused, true);
    await broker.resumeQueue('com.lp.svc');
    // pg-boss's supervise/monitor/maintenance passes (every second here) must work without DDL too:
    // watch a few passes for permission errors.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const errors = logger.lines.filter((line) => /error|permission/i.test(String(line[0])));
    assert.deepEqual(errors, [], 'no permission errors logged');
  });

  it('passes doctor as the application role', async () => {
    const { code, output } = await runCliInProcess(['doctor', '--url', appUrl]);
    assert.equal(code, 0, output);
    assert.doesNotMatch(output, /permission denied/);
  });

  it('refuses DDL for the application role', async () => {
    const app = new pg.Client({ connectionString: appUrl });
    await app.connect();
    try {
      for (const ddl of [
        'CREATE TABLE public.evil (id int)',
        'CREATE TABLE pgboss.evil (id int)',
        'DROP TABLE public.arvo_workflow_state',
        'ALTER TABLE pgboss.job ADD COLUMN evil int',
        'TRUNCATE pgboss.job',
        'CREATE SCHEMA evil',
      ]) {
        await assert.rejects(app.query(ddl), (error: { code?: string }) => {
          // 42501 insufficient_privilege; 42501/ownership errors are also 42501.
          assert.equal(error.code, '42501', `${ddl}: ${String(error)}`);
          return true;
        });
      }
    } finally {
      await app.end();
    }
  });
});
