/**
 * Graceful shutdown under load: `stop()` in the middle of a run loses nothing. Handlers in flight
 * finish (or roll back and are retried), and a new worker process finishes every workflow.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import type { PostgresMachineMemory } from '../../src/memory/index';
import { silentLogger } from '../../src/shared/logger';
import { newPool, waitFor } from '../broker/support';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { createInitEvent, type FixtureRecord } from '../support/orchestrator';
import { CONSUMED_PER_WORKFLOW, INITIATOR, ORCHESTRATOR, startWorkflowWorker } from './fixture';

const WORKFLOWS = 150;
const WORKER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-worker.ts');

describe('reliability: stop() during a run', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let client: PostgresEventBroker;
  let first: { broker: PostgresEventBroker; memory: PostgresMachineMemory } | undefined;
  let next: ReturnType<typeof spawn> | undefined;
  const deliveries = new Map<string, string[]>();

  before(async () => {
    db = await createTestDatabase('rel_shutdown');
    pool = newPool(db.url);
    client = new PostgresEventBroker({ connectionString: db.url, logger: silentLogger });
    await client.onWorkflowComplete({
      source: INITIATOR,
      listener: (event) => {
        deliveries.set(event.subject, [...(deliveries.get(event.subject) ?? []), event.id]);
      },
    });
  });

  after(async () => {
    next?.kill('SIGKILL');
    await first?.broker.stop({ timeoutMs: 1000 });
    await first?.memory.close();
    await client?.stop({ timeoutMs: 2000 });
    await pool?.end();
    await db?.drop();
  });

  it('loses nothing when the worker stops mid-run; the next process finishes the work', async () => {
    first = await startWorkflowWorker(db.url, { serviceDelayMs: 30 });
    await client.start();
    const inits = Array.from({ length: WORKFLOWS }, () => createInitEvent(ORCHESTRATOR));
    await Promise.all(inits.map((event) => client.dispatch(event)));
    await waitFor('the run is under way', () => deliveries.size >= 10, 30_000, 10);

    await first.broker.stop({ timeoutMs: 5000 });
    await first.memory.close();
    const doneAtStop = deliveries.size;
    assert.ok(doneAtStop < WORKFLOWS, `stop() came after the run (${doneAtStop} done)`);
    const { rows: active } = await pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE state = 'active'`,
    );
    assert.equal(active[0].n, 0, 'no job is left claimed by the stopped worker');

    next = spawn(process.execPath, ['--import', 'tsx', WORKER_SCRIPT], {
      env: { ...process.env, BROKER_DATABASE_URL: db.url },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitFor(
      `all ${WORKFLOWS} completions (have ${deliveries.size})`,
      () => deliveries.size === WORKFLOWS,
      60_000,
      100,
    );

    const { rows } = await pool.query<{ subject: string; data: FixtureRecord }>(
      'SELECT subject, data FROM arvo_workflow_state',
    );
    assert.equal(rows.length, WORKFLOWS);
    for (const { subject, data } of rows) {
      assert.equal(data.status, 'done');
      assert.equal(new Set(data.consumed).size, CONSUMED_PER_WORKFLOW);
      assert.deepEqual(new Set(deliveries.get(subject)), new Set([data.produced.at(-1)]));
    }
    const { rows: completions } = await pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT data->>'subject')::int AS subjects FROM pgboss.job WHERE name = $1`,
      [INITIATOR],
    );
    assert.deepEqual(completions[0], { n: WORKFLOWS, subjects: WORKFLOWS });
    const { rows: dead } = await pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name IN ('arvo.dead-letter', 'arvo.unroutable')`,
    );
    assert.equal(dead[0].n, 0);
    console.log(
      `graceful shutdown: stopped with ${doneAtStop}/${WORKFLOWS} done; the next process finished the rest`,
    );
  });
});
