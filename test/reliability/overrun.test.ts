/**
 * Handler overrun: an orchestrator handler outlives both its lock TTL and its job's
 * `expireInSeconds`. The job is retried by another worker, which takes the lock over and advances
 * the workflow; the stale handler's write is then rejected by the version check (its transaction
 * rolls back), its deferred unlock does not free the lock of the holder after it, and the workflow
 * finishes exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import {
  connectPostgresMachineMemory,
  MachineMemoryConflictError,
  type PostgresMachineMemory,
} from '../../src/memory/index';
import { silentLogger } from '../../src/shared/logger';
import { memoryLogger, newPool, waitFor } from '../broker/support';
import { createTestDatabase, type TestDatabase } from '../support/database';
import {
  createInitEvent,
  createOrchestratorFixture,
  createServiceFixture,
  type FixtureRecord,
} from '../support/orchestrator';
import { CONSUMED_PER_WORKFLOW, INITIATOR, ORCHESTRATOR, STEPS } from './fixture';

const LOCK_TTL_MS = 1500;

describe('reliability: a handler that outlives its lock TTL and its job expiry', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  const memories: PostgresMachineMemory[] = [];
  const brokers: PostgresEventBroker[] = [];

  async function memory(): Promise<PostgresMachineMemory> {
    const created = await connectPostgresMachineMemory({
      connectionString: db.url,
      logger: silentLogger,
      lock: { ttlMs: LOCK_TTL_MS, maxAttempts: 3 },
    });
    memories.push(created);
    return created;
  }

  function broker(logger = silentLogger): PostgresEventBroker {
    const created = new PostgresEventBroker({
      connectionString: db.url,
      logger,
      maintenanceIntervalSeconds: 1,
      defaults: { worker: { retryDelay: 0, retryBackoff: false, retryLimit: 10 } },
    });
    brokers.push(created);
    return created;
  }

  before(async () => {
    db = await createTestDatabase('rel_overrun');
    pool = newPool(db.url);
  });

  after(async () => {
    for (const created of brokers) await created.stop({ timeoutMs: 2000 });
    for (const created of memories) await created.close();
    await pool?.end();
    await db?.drop();
  });

  it('takes over, rejects the stale write and unlock, and finishes exactly once', async () => {
    // Worker A: its orchestrator stalls inside the lock on the first reply it reads.
    const staleMemory = await memory();
    let stalled: { subject: string; version: number } | undefined;
    let releaseStall!: () => void;
    const stall = new Promise<void>((resolve) => {
      releaseStall = resolve;
    });
    let staleWriteError: unknown;
    let staleWrite: { data: FixtureRecord; prev: FixtureRecord } | undefined;
    let staleExecuteSettled = false;
    const stallingMemory = {
      lock: (subject: string) => staleMemory.lock(subject),
      unlock: (subject: string) => staleMemory.unlock(subject),
      async read(subject: string) {
        const record = await staleMemory.read(subject);
        if (record && !stalled) {
          stalled = { subject, version: (record as FixtureRecord).step };
          await stall;
        }
        return record;
      },
      async write(subject: string, data: any, prev: any, metadata?: unknown) {
        staleWrite ??= { data, prev };
        try {
          await staleMemory.write(subject, data, prev, metadata);
        } catch (error) {
          staleWriteError = error;
          throw error;
        }
      },
    };
    const staleOrchestrator = createOrchestratorFixture({
      name: ORCHESTRATOR,
      memory: stallingMemory as any,
      steps: STEPS,
    });
    const logA = memoryLogger();
    const workerA = broker(logA);
    await workerA.register(
      {
        source: staleOrchestrator.source,
        execute: (event: ArvoEvent, options) =>
          staleOrchestrator.execute(event, options).finally(() => {
            staleExecuteSettled = true;
          }),
      },
      { worker: { batchSize: 1, localConcurrency: 1, expireInSeconds: 1 } },
    );
    await workerA.register(createServiceFixture('com.rel.step'));
    await workerA.register(createServiceFixture('com.rel.fan'));
    const completions: ArvoEvent[] = [];
    await workerA.onWorkflowComplete({
      source: INITIATOR,
      listener: (event) => void completions.push(event),
    });
    await workerA.start();

    const init = createInitEvent(ORCHESTRATOR);
    await workerA.dispatch(init);
    await waitFor('worker A stalls inside the lock', () => stalled, 20_000, 20);
    const subject = stalled!.subject;
    const stateOf = async () =>
      (await pool.query('SELECT data, version FROM arvo_workflow_state WHERE subject = $1', [subject]))
        .rows[0] as { data: FixtureRecord; version: string };
    const versionBefore = (await stateOf()).version;

    // Worker B serves the same orchestrator: it gets the expired job and the expired lock.
    const workerB = broker();
    await workerB.register(
      createOrchestratorFixture({ name: ORCHESTRATOR, memory: await memory(), steps: STEPS }),
    );
    await workerB.start();
    await waitFor(
      'worker B advanced the workflow past the stalled step',
      async () => (await stateOf()).data.step >= 1,
      30_000,
      50,
    );
    const { rows: retried } = await pool.query(
      `SELECT max(retry_count)::int AS retries FROM pgboss.job WHERE name = $1 AND data->>'subject' = $2`,
      [`arvo.orc.${ORCHESTRATOR}`, subject],
    );
    assert.ok(retried[0].retries >= 1, 'the overrunning job expired and was delivered again');

    // A third holder takes the lock (after B's TTL or release), then the stale handler wakes up.
    const holderC = await memory();
    await waitFor('holder C takes the lock', () => holderC.lock(subject), 20_000, 100);
    releaseStall();
    await waitFor('the stale handler finished', () => staleExecuteSettled, 20_000, 20);
    // Worker A failed the overrunning attempt itself (kind timeout) when it overran, before pg-boss's expiry.
    assert.ok(
      logA.lines.some((line) => /will be retried \(timeout\)/.test(String(line[0]))),
      'worker A settled the stale attempt with kind timeout',
    );
    // The stale handler's write comes after it wakes up (its execute settling first covers the init event).
    await waitFor('the stale write settled', () => staleWriteError, 20_000, 20);
    // The stale write was refused: pg-boss aborted the expired job, so its transaction takes no
    // statement (had it reached the table, the version check would refuse it). A typed error
    // either way, and the stale state never committed.
    assert.ok(staleWriteError instanceof Error, 'the stale write failed');
    assert.doesNotMatch(String(staleWriteError), /TypeError/);
    // The version check itself: the same stale transition, written straight to the table, is rejected.
    await assert.rejects(
      staleMemory.write(subject, staleWrite!.data, staleWrite!.prev),
      MachineMemoryConflictError,
    );
    // The stale unlock ran (after A's rollback) and left C's lock alone: C can still release it.
    assert.equal(await holderC.unlock(subject), true, "the stale unlock freed the new owner's lock");
    assert.notEqual((await stateOf()).version, versionBefore);

    await waitFor('the workflow completes', () => completions.length >= 1, 30_000, 50);
    const final = await stateOf();
    assert.equal(final.data.status, 'done');
    assert.equal(final.data.consumed.length, CONSUMED_PER_WORKFLOW);
    assert.equal(new Set(final.data.consumed).size, CONSUMED_PER_WORKFLOW, 'no event applied twice');
    const { rows: done } = await pool.query(`SELECT data->>'id' AS id FROM pgboss.job WHERE name = $1`, [
      INITIATOR,
    ]);
    assert.deepEqual(
      done.map((row) => row.id),
      [final.data.produced.at(-1)],
      'exactly one completion event',
    );
    assert.ok(completions.every((event) => event.id === final.data.produced.at(-1)));
  });
});
