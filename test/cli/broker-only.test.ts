/**
 * A broker-only deployment (no machine memory) from the command line: `migrate --broker-only` and
 * `doctor --broker-only` in the schema the user chooses, and `health` with the exit codes a probe reads.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PostgresEventBroker } from '../../src/broker/index';
import { clientEvent, handler, memoryLogger } from '../broker/support';
import { createTestDatabase, testPool } from '../support/database';
import { cli } from './run-cli';

const run = cli;

describe('arvo-postgres CLI: broker-only deployments and health', { timeout: 180_000 }, () => {
  it('a broker-only deployment: migrate --broker-only creates pg-boss in the chosen schema and no memory tables; doctor --broker-only passes', async () => {
    const own = await createTestDatabase('cli_broker_only');
    const pool = testPool(own.url, 1);
    try {
      const printed = await run(['migrate', '--print-sql', '--broker-only', '--pgboss-schema', 'jobs']);
      assert.doesNotMatch(printed.stdout, /arvo_workflow_state/);
      assert.match(printed.stdout, /CREATE TABLE jobs\.job/);
      assert.match(printed.stdout, /CREATE TABLE IF NOT EXISTS public\.arvo_event_history /);
      // Without the flag doctor fails on the missing memory tables; with it, only pg-boss matters.
      assert.equal((await run(['doctor', '--url', own.url, '--pgboss-schema', 'jobs'])).code, 1);
      const migrated = await run(['migrate', '--broker-only', '--url', own.url, '--pgboss-schema', 'jobs']);
      assert.equal(migrated.code, 0, migrated.stderr);
      assert.doesNotMatch(migrated.stdout, /memory/);
      assert.match(migrated.stdout, /^history: public\.arvo_event_history ready \(layout version 2\)$/m);
      const { rows } = await pool.query(
        `SELECT to_regclass('public.arvo_workflow_state') AS state, to_regclass('jobs.job') AS job,
          to_regclass('jobs.arvo_queue_control') AS control, to_regclass('public.arvo_event_history') AS history`,
      );
      assert.deepEqual(rows[0], {
        state: null,
        job: 'jobs.job',
        control: 'jobs.arvo_queue_control',
        history: 'arvo_event_history',
      });
      const doctor = await run(['doctor', '--broker-only', '--url', own.url, '--pgboss-schema', 'jobs']);
      assert.equal(doctor.code, 0, doctor.stdout);
      assert.doesNotMatch(doctor.stdout, /memory/);
      assert.match(doctor.stdout, /^ok {4}broker tables/m);
      // doctor --broker-only checks the broker's tables: the queue control table and the history's index.
      await pool.query('DROP TABLE jobs.arvo_queue_control');
      await pool.query('DROP INDEX public.arvo_event_history_root_subject_id_idx');
      const broken = await run(['doctor', '--broker-only', '--url', own.url, '--pgboss-schema', 'jobs']);
      assert.equal(broken.code, 1, broken.stdout);
      assert.match(broken.stdout, /table jobs\.arvo_queue_control does not exist/);
      assert.match(
        broken.stdout,
        /index arvo_event_history_root_subject_id_idx on public\.arvo_event_history \(root_subject, id\) is missing/,
      );
      await pool.query('DELETE FROM jobs.arvo_postgres_migrations');
      await pool.query(
        "DELETE FROM public.arvo_postgres_migrations WHERE component = 'history:arvo_event_history' AND version = 2",
      );
      assert.equal(
        (await run(['migrate', '--broker-only', '--url', own.url, '--pgboss-schema', 'jobs'])).code,
        0,
      );
      assert.equal(
        (await run(['doctor', '--broker-only', '--url', own.url, '--pgboss-schema', 'jobs'])).code,
        0,
        'migrate --broker-only repairs both',
      );
      assert.equal((await run(['doctor', '--url', own.url, '--pgboss-schema', 'jobs'])).code, 1);
      assert.equal((await run(['migrate', '--broker-only', '--from-arvo-tools', '--url', own.url])).code, 2);
    } finally {
      await pool.end();
      await own.drop();
    }
  });

  it('health: exit 1 without pg-boss, 0 once installed, 1 for an unknown queue or one whose due job waits past --max-wait', async () => {
    const own = await createTestDatabase('cli_health');
    let idle: PostgresEventBroker | undefined;
    try {
      const bare = await run(['health', '--url', own.url]);
      assert.equal(bare.code, 1, bare.stdout);
      assert.match(bare.stderr + bare.stdout, /no pg-boss schema/);
      assert.equal((await run(['migrate', '--broker-only', '--url', own.url])).code, 0);
      const healthy = await run(['health', '--url', own.url]);
      assert.equal(healthy.code, 0, healthy.stderr);
      assert.match(healthy.stdout, /^healthy/);
      // A queue nobody consumes: its job waits.
      const created = new PostgresEventBroker({ connectionString: own.url, logger: memoryLogger() });
      await created.register(handler('com.health.unserved', async () => []));
      await created.start();
      await created.stop({ timeoutMs: 1000 });
      idle = new PostgresEventBroker({ connectionString: own.url, logger: memoryLogger() });
      await idle.start();
      await idle.dispatch(clientEvent('com.health.unserved'));
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const unknown = await run(['health', '--url', own.url, '--queue', 'com.health.unservd', '--json']);
      assert.equal(unknown.code, 1);
      assert.match(
        JSON.parse(unknown.stdout).problems[0],
        /no queue "com.health.unservd".*com\.health\.unserved/,
      );
      const lagging = await run([
        'health',
        '--url',
        own.url,
        '--queue',
        'com.health.unserved',
        '--max-wait',
        '1s',
      ]);
      assert.equal(lagging.code, 1, lagging.stdout);
      assert.match(lagging.stdout, /com\.health\.unserved: a due job has waited/);
      assert.equal(
        (await run(['health', '--url', own.url, '--queue', 'com.health.unserved', '--max-wait', '1h'])).code,
        0,
      );
      assert.equal((await run(['health', '--url', own.url, '--max-wait', 'soon'])).code, 2);
    } finally {
      await idle?.stop({ timeoutMs: 1000 });
      await own.drop();
    }
  });
});
