/**
 * Lock contention under fan-out (not a test): `npx tsx test/broker/measure-contention.ts`.
 * N workflows fan out 8 calls each, whose 8 replies contend for the workflow's lock. Compares the
 * two ways the broker handles that: reschedule on LOCK_UNACQUIRED alone (`subjectConcurrency: 0`),
 * and pg-boss group concurrency per subject on the orchestrator queue (the default for `arvo.orc.*`)
 * with rescheduling as the fallback.
 */
import './support';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { connectPostgresMachineMemory } from '../../src/memory/index';
import { silentLogger } from '../../src/shared/logger';
import { createTestDatabase } from '../support/database';
import { createInitEvent, createOrchestratorFixture, createServiceFixture } from '../support/orchestrator';
import { waitFor } from './support';

const workflows = Number(process.env.WORKFLOWS ?? 40);

async function measure(
  label: string,
  subjectConcurrency: number | undefined,
  lockAttempts: number,
): Promise<void> {
  const db = await createTestDatabase('broker_contention');
  const pool = new pg.Pool({ connectionString: db.url, max: 30 });
  pool.on('error', () => {});
  const memory = await connectPostgresMachineMemory({
    pool,
    logger: silentLogger,
    lock: { maxAttempts: lockAttempts },
  });
  const broker = new PostgresEventBroker({ pool, logger: silentLogger });
  const done = new Set<string>();
  await broker.register(createServiceFixture('com.calc.fan', { delayMs: 20 }));
  await broker.register(
    createOrchestratorFixture({ name: 'fan', memory, steps: [{ fanOut: 'com.calc.fan', count: 8 }] }),
    { worker: { retryLimit: 0, ...(subjectConcurrency === undefined ? {} : { subjectConcurrency }) } },
  );
  await broker.onWorkflowComplete({
    source: 'com.test.client',
    listener: (event) => void done.add(event.subject),
  });
  await broker.start();
  const inits = Array.from({ length: workflows }, () => createInitEvent('fan'));
  const started = performance.now();
  await Promise.all(inits.map((init) => broker.dispatch(init)));
  await waitFor(label, () => inits.every((init) => done.has(init.subject)), 300_000, 10);
  const seconds = (performance.now() - started) / 1000;
  const { rows } = await pool.query(
    `SELECT count(*) FILTER (WHERE output->>'reason' = 'lock contention')::int AS rescheduled,
            count(*) FILTER (WHERE state <> 'completed')::int AS not_completed
       FROM pgboss.job WHERE name = 'arvo.orc.fan'`,
  );
  console.log(
    `${label}: ${workflows} workflows × 10 hops in ${seconds.toFixed(2)} s (${((workflows * 10) / seconds).toFixed(0)} hops/s), ` +
      `${rows[0].rescheduled} reschedules, ${rows[0].not_completed} orchestrator jobs not completed`,
  );
  await broker.stop({ timeoutMs: 5000 });
  await memory.close();
  await pool.end();
  await db.drop();
}

await measure('subjectConcurrency 0 (reschedule only), lock 1 attempt ', 0, 1);
await measure('subjectConcurrency 0 (reschedule only), lock 4 attempts', 0, 4);
await measure('default (1 for arvo.orc.*), lock 1 attempt           ', undefined, 1);
await measure('default (1 for arvo.orc.*), lock 4 attempts          ', undefined, 4);
process.exit(0);
