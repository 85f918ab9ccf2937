/**
 * Quick throughput/latency check of the broker (not a test): `npx tsx test/broker/measure-chain.ts`
 * (uses DATABASE_URL, or starts an embedded PostgreSQL).
 *
 * - chain: five services forwarding to each other, then the reply to the client (6 hops per chain);
 * - workflow: the fixture orchestrator calling three services in sequence on PostgresMachineMemory
 *   (8 hops: init, 3 × call + reply, completion).
 */
import './support';
import { createArvoEvent } from 'arvo-core';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { connectPostgresMachineMemory } from '../../src/memory/index';
import { silentLogger } from '../../src/shared/logger';
import { createTestDatabase } from '../support/database';
import { createInitEvent, createOrchestratorFixture, createServiceFixture } from '../support/orchestrator';
import { clientEvent, handler, waitFor } from './support';

const CHAIN = ['com.chain.a', 'com.chain.b', 'com.chain.c', 'com.chain.d', 'com.chain.e'];
const chains = Number(process.env.CHAINS ?? 200);
const workflows = Number(process.env.WORKFLOWS ?? 100);

const db = await createTestDatabase('broker_measure');
const pool = new pg.Pool({ connectionString: db.url, max: 30 });
pool.on('error', () => {});
const memory = await connectPostgresMachineMemory({ pool, logger: silentLogger });
const broker = new PostgresEventBroker({ pool, logger: silentLogger });
const done = new Set<string>();

for (const [index, source] of CHAIN.entries()) {
  const next = CHAIN[index + 1];
  await broker.register(
    handler(source, async (event) => [
      createArvoEvent(
        {
          source,
          type: next ?? 'evt.chain.done',
          subject: event.subject,
          to: next ?? 'com.test.client',
          data: {},
        },
        {},
        { disable: true },
      ),
    ]),
  );
}
for (const type of ['com.calc.one', 'com.calc.two', 'com.calc.three']) {
  await broker.register(createServiceFixture(type));
}
await broker.register(
  createOrchestratorFixture({
    name: 'measure',
    memory,
    steps: [{ call: 'com.calc.one' }, { call: 'com.calc.two' }, { call: 'com.calc.three' }],
  }),
);
await broker.onWorkflowComplete({
  source: 'com.test.client',
  listener: (event) => void done.add(event.subject),
});
await broker.start();

async function timed(
  label: string,
  hopsPerItem: number,
  items: number,
  dispatchAll: () => Promise<string[]>,
) {
  const started = performance.now();
  const subjects = await dispatchAll();
  await waitFor(label, () => subjects.every((subject) => done.has(subject)), 600_000, 20);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${label}: ${items} × ${hopsPerItem} hops in ${seconds.toFixed(2)} s = ${((items * hopsPerItem) / seconds).toFixed(0)} hops/s`,
  );
}

// Single chain, one after another: latency per hop.
{
  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) {
    const event = clientEvent(CHAIN[0]!);
    const started = performance.now();
    await broker.dispatch(event);
    await waitFor('single chain', () => done.has(event.subject), 30_000, 2);
    latencies.push((performance.now() - started) / 6);
  }
  latencies.sort((a, b) => a - b);
  console.log(
    `single chain: per hop p50 ${latencies[10]!.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms (dispatch → reply, 6 hops)`,
  );
}

await timed('chains in parallel', 6, chains, async () => {
  const events = Array.from({ length: chains }, () => clientEvent(CHAIN[0]!));
  await Promise.all(events.map((event) => broker.dispatch(event)));
  return events.map((event) => event.subject);
});

await timed('workflows in parallel', 8, workflows, async () => {
  const events = Array.from({ length: workflows }, () => createInitEvent('measure'));
  await Promise.all(events.map((event) => broker.dispatch(event)));
  return events.map((event) => event.subject);
});

await broker.stop({ timeoutMs: 5000 });
await memory.close();
await pool.end();
await db.drop();
process.exit(0);
