/**
 * PostgreSQL restart mid-run: the server (a server of this test's own, data kept across the
 * restart) is stopped while workflows are in flight and started again. While it is down,
 * `dispatch` fails fast with `DatabaseUnavailableError` and, once the circuit opens, at once; the
 * broker and the memory reconnect by themselves and every workflow completes exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { DatabaseUnavailableError, PostgresEventBroker } from '../../src/broker/index';
import type { PostgresMachineMemory } from '../../src/memory/index';
import { silentLogger } from '../../src/shared/logger';
import { waitFor } from '../broker/support';
import { createInitEvent, type FixtureRecord } from '../support/orchestrator';
import { type RestartablePostgresServer, startRestartablePostgres } from '../support/postgres-server';
import { CONSUMED_PER_WORKFLOW, INITIATOR, ORCHESTRATOR, startWorkflowWorker } from './fixture';

const WORKFLOWS = 120;
const CALL_TIMEOUT_MS = 3000;
const FAILURE_THRESHOLD = 3;

async function elapsed<T>(fn: () => Promise<T>): Promise<{ ms: number; error: unknown }> {
  const started = performance.now();
  try {
    await fn();
    return { ms: performance.now() - started, error: undefined };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

describe('reliability: PostgreSQL stopped and started again during a run', () => {
  let server: RestartablePostgresServer;
  let url: string;
  let worker: { broker: PostgresEventBroker; memory: PostgresMachineMemory };
  let client: PostgresEventBroker;
  const deliveries = new Map<string, string[]>();

  before(async () => {
    server = await startRestartablePostgres();
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query('CREATE DATABASE rel_restart');
    await admin.end();
    url = server.url.replace(/\/postgres$/, '/rel_restart');
    worker = await startWorkflowWorker(url, {
      lockTtlMs: 3000,
      serviceDelayMs: 20,
      // Default expiry (300 s), retries and maintenance: a job whose settle failed while the server was
      // down must not wait for its expiry.
      broker: { connectionTimeoutMillis: 2000 },
    });
    client = new PostgresEventBroker({
      connectionString: url,
      logger: silentLogger,
      connectionTimeoutMillis: 2000,
      circuitBreaker: {
        failureThreshold: FAILURE_THRESHOLD,
        resetTimeoutMs: 1000,
        callTimeoutMs: CALL_TIMEOUT_MS,
      },
    });
    await client.onWorkflowComplete({
      source: INITIATOR,
      listener: (event) => {
        deliveries.set(event.subject, [...(deliveries.get(event.subject) ?? []), event.id]);
      },
    });
    await client.start();
  });

  after(async () => {
    await client?.stop({ timeoutMs: 2000 });
    await worker?.broker.stop({ timeoutMs: 2000 });
    await worker?.memory.close();
    await server?.destroy();
  });

  it('fails dispatch fast while down, reconnects by itself and loses nothing', async () => {
    const before = Array.from({ length: WORKFLOWS / 2 }, () => createInitEvent(ORCHESTRATOR));
    await Promise.all(before.map((event) => client.dispatch(event)));
    await waitFor('some workflows done before the restart', () => deliveries.size >= 5, 30_000, 20);

    await server.stop();
    const downAt = Date.now();
    assert.ok(deliveries.size < WORKFLOWS / 2, 'the restart happened mid-run');

    // Down: each call fails with the typed error in bounded time; after the threshold, at once.
    const during = Array.from({ length: WORKFLOWS / 2 }, () => createInitEvent(ORCHESTRATOR));
    for (let index = 0; index < FAILURE_THRESHOLD; index++) {
      const { ms, error } = await elapsed(() => client.dispatch(during[index]!));
      assert.ok(error instanceof DatabaseUnavailableError, `call ${index}: ${String(error)}`);
      assert.ok(ms < CALL_TIMEOUT_MS + 500, `call ${index} took ${ms} ms`);
    }
    const open = await elapsed(() => client.dispatch(during[FAILURE_THRESHOLD]!));
    assert.ok(open.error instanceof DatabaseUnavailableError);
    assert.match((open.error as Error).message, /circuit open/);
    // At once, not after a connection attempt: well under the call timeout even on a loaded machine.
    assert.ok(open.ms < CALL_TIMEOUT_MS / 6, `an open circuit answered after ${open.ms} ms`);
    assert.ok(!(open.error as Error).message.includes('postgres:postgres@'), 'no credentials in the error');

    // Keep it down a little longer than the lock TTL and job expiry matter for, then restart.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 3000 - (Date.now() - downAt))));
    await server.start();
    const upAt = Date.now();

    // The first dispatch after the reset timeout is the probe; once it succeeds the circuit closes.
    await waitFor(
      'dispatch works again',
      async () => {
        await client.dispatch(during[0]!);
        return true;
      },
      30_000,
      200,
    );
    await Promise.all(during.map((event) => client.dispatch(event)));

    const inits = [...before, ...during];
    // The workflows in flight at the outage continue within seconds of the return, not after the
    // 300 s expiry (the bound is generous for a loaded 2-core machine).
    await waitFor(
      'every workflow in flight at the outage completed',
      () => before.every((event) => deliveries.has(event.subject)),
      45_000,
      200,
    );
    const inFlightDoneMs = Date.now() - upAt;
    await waitFor(
      `all ${WORKFLOWS} completions (have ${deliveries.size})`,
      () => deliveries.size === WORKFLOWS,
      90_000,
      200,
    );
    console.log(`restart: in-flight workflows done ${inFlightDoneMs} ms after the server was back`);
    const check = new pg.Pool({ connectionString: url, max: 2 });
    try {
      const { rows } = await check.query<{ subject: string; data: FixtureRecord }>(
        'SELECT subject, data FROM arvo_workflow_state',
      );
      assert.equal(rows.length, WORKFLOWS);
      const subjects = new Set(inits.map((event) => event.subject));
      for (const { subject, data } of rows) {
        assert.ok(subjects.has(subject));
        assert.equal(data.status, 'done');
        assert.equal(data.consumed.length, CONSUMED_PER_WORKFLOW);
        assert.equal(new Set(data.consumed).size, CONSUMED_PER_WORKFLOW);
        assert.deepEqual(new Set(deliveries.get(subject)), new Set([data.produced.at(-1)]));
      }
      const { rows: completions } = await check.query(
        `SELECT data->>'subject' AS subject, count(*)::int AS n FROM pgboss.job WHERE name = $1 GROUP BY 1`,
        [INITIATOR],
      );
      assert.equal(completions.length, WORKFLOWS);
      assert.ok(completions.every((row) => row.n === 1));
      const { rows: dead } = await check.query(
        `SELECT count(*)::int AS n FROM pgboss.job WHERE name IN ('arvo.dead-letter', 'arvo.unroutable')`,
      );
      assert.equal(dead[0].n, 0);
    } finally {
      await check.end();
    }
  });
});
