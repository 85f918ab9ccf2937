/**
 * Worker crashes: three worker processes serve a 300-workflow run while a random one is killed with
 * SIGKILL every second and restarted. The guarantee under test (README, "Guarantees"): every
 * event is delivered at least once; because the memory shares the database with the broker, each
 * state transition and each output event is committed exactly once, with the job's completion.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { silentLogger } from '../../src/shared/logger';
import { newPool, waitFor } from '../broker/support';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { createInitEvent, type FixtureRecord } from '../support/orchestrator';
import { CONSUMED_PER_WORKFLOW, INITIATOR, ORCHESTRATOR, PRODUCED_PER_WORKFLOW } from './fixture';

const WORKFLOWS = Number(process.env.ARVO_CRASH_WORKFLOWS ?? 300);
const WORKERS = 3;
const KILL_EVERY_MS = 1000;
const KILL_WINDOW_MS = 45_000;
const WORKER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-worker.ts');
const WORKFLOW_QUEUES = [`arvo.orc.${ORCHESTRATOR}`, 'com.rel.step', 'com.rel.fan', INITIATOR];

interface Worker {
  child: ChildProcess;
  ready: boolean;
  exited: Promise<void>;
}

function spawnWorker(url: string): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER_SCRIPT], {
    env: { ...process.env, BROKER_DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const worker: Worker = {
    child,
    ready: false,
    exited: new Promise((resolve) => child.once('exit', () => resolve())),
  };
  child.stdout!.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('ready')) worker.ready = true;
  });
  return worker;
}

describe('reliability: worker processes killed with SIGKILL during a run', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let client: PostgresEventBroker;
  const workers: Worker[] = [];
  /** Completion deliveries to the listener: subject → event ids, in delivery order. */
  const deliveries = new Map<string, string[]>();
  let kills = 0;

  before(async () => {
    db = await createTestDatabase('rel_crash');
    pool = newPool(db.url);
    for (let index = 0; index < WORKERS; index++) workers.push(spawnWorker(db.url));
    await waitFor('workers ready', () => workers.every((worker) => worker.ready), 60_000);
    client = new PostgresEventBroker({ connectionString: db.url, logger: silentLogger });
    await client.onWorkflowComplete({
      source: INITIATOR,
      listener: (event) => {
        const ids = deliveries.get(event.subject) ?? [];
        ids.push(event.id);
        deliveries.set(event.subject, ids);
      },
    });
    await client.start();
  });

  after(async () => {
    for (const worker of workers) worker.child.kill('SIGKILL');
    await Promise.all(workers.map((worker) => worker.exited));
    await client?.stop({ timeoutMs: 5000 });
    await pool?.end();
    await db?.drop();
  });

  it(`completes ${WORKFLOWS} workflows exactly once while workers are killed every second`, async () => {
    const inits = Array.from({ length: WORKFLOWS }, () => createInitEvent(ORCHESTRATOR));
    const started = Date.now();
    for (let offset = 0; offset < inits.length; offset += 50) {
      await Promise.all(inits.slice(offset, offset + 50).map((event) => client.dispatch(event)));
    }

    const killer = setInterval(() => {
      if (Date.now() - started > KILL_WINDOW_MS) return;
      const ready = workers.filter((worker) => worker.ready);
      const victim = ready[Math.floor(Math.random() * ready.length)];
      if (!victim) return;
      victim.child.kill('SIGKILL');
      kills += 1;
      workers[workers.indexOf(victim)] = spawnWorker(db.url);
    }, KILL_EVERY_MS);
    try {
      await waitFor(
        () => `all ${WORKFLOWS} completions (have ${deliveries.size})`,
        () => deliveries.size === WORKFLOWS,
        180_000,
        200,
      );
    } finally {
      clearInterval(killer);
    }
    const elapsedMs = Date.now() - started;
    // Nothing left to run: every job of the workflow queues settled as completed, none dead-lettered.
    await waitFor(
      'every workflow job completed',
      async () => {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS open FROM pgboss.job WHERE name = ANY($1) AND state <> 'completed'`,
          [WORKFLOW_QUEUES],
        );
        return rows[0].open === 0;
      },
      60_000,
      200,
    );
    const { rows: dead } = await pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name IN ('arvo.dead-letter', 'arvo.unroutable')`,
    );
    assert.equal(dead[0].n, 0, 'nothing dead-lettered or unroutable');

    // Every workflow finished, and no state transition was applied twice.
    const { rows: records } = await pool.query<{ subject: string; data: FixtureRecord }>(
      'SELECT subject, data FROM arvo_workflow_state',
    );
    assert.equal(records.length, WORKFLOWS);
    const initSubjects = new Set(inits.map((event) => event.subject));
    for (const { subject, data } of records) {
      assert.ok(initSubjects.has(subject), `unknown workflow ${subject}`);
      assert.equal(data.status, 'done', `${subject} is ${data.status}`);
      assert.equal(data.consumed.length, CONSUMED_PER_WORKFLOW, `${subject} consumed ${data.consumed}`);
      assert.equal(new Set(data.consumed).size, data.consumed.length, `${subject} applied an event twice`);
      assert.equal(data.produced.length, PRODUCED_PER_WORKFLOW, `${subject} produced ${data.produced}`);
      assert.equal(data.results.length, 3);
    }

    // Each completion event was created exactly once (one job row, one event id, per workflow) …
    const { rows: completions } = await pool.query<{ id: string; subject: string; event_id: string }>(
      `SELECT id, data->>'subject' AS subject, data->>'id' AS event_id FROM pgboss.job WHERE name = $1`,
      [INITIATOR],
    );
    assert.equal(completions.length, WORKFLOWS);
    const completionBySubject = new Map(completions.map((row) => [row.subject, row.event_id]));
    assert.equal(completionBySubject.size, WORKFLOWS, 'one completion per workflow');
    // … and it is the one the orchestrator recorded, delivered at least once, always with that id.
    let duplicateDeliveries = 0;
    for (const { subject, data } of records) {
      const eventId = completionBySubject.get(subject);
      assert.equal(eventId, data.produced.at(-1));
      const delivered = deliveries.get(subject) ?? [];
      assert.ok(delivered.length >= 1, `${subject} never delivered`);
      assert.deepEqual(new Set(delivered), new Set([eventId]));
      duplicateDeliveries += delivered.length - 1;
    }
    // Every emitted event is stored exactly once: job ids are the event ids.
    const produced = records.flatMap(({ data }) => data.produced);
    const { rows: stored } = await pool.query(
      `SELECT data->>'id' AS id, count(*)::int AS n FROM pgboss.job WHERE data->>'id' = ANY($1) AND name = ANY($2) GROUP BY 1`,
      [produced, WORKFLOW_QUEUES],
    );
    assert.equal(stored.length, produced.length);
    assert.ok(stored.every((row) => row.n === 1));

    const { rows: redelivery } = await pool.query(
      `SELECT coalesce(sum(retry_count), 0)::int AS retries,
              count(*) FILTER (WHERE output ? 'rescheduledAs')::int AS rescheduled
         FROM pgboss.job WHERE name = ANY($1)`,
      [WORKFLOW_QUEUES],
    );
    assert.ok(kills >= 5, `only ${kills} kills happened`);
    assert.ok(redelivery[0].retries > 0, 'killed workers left jobs that had to be delivered again');
    console.log(
      `worker crashes: ${WORKFLOWS} workflows in ${elapsedMs} ms, ${kills} SIGKILLs, ` +
        `${redelivery[0].retries} redeliveries after expiry/failure, ${redelivery[0].rescheduled} lock-contention reschedules, ` +
        `${duplicateDeliveries} duplicate completion deliveries`,
    );
  });
});
