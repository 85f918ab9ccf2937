/**
 * `npm run demo`: arvo-postgres end to end, on an embedded PostgreSQL 18 (or `DATABASE_URL`).
 *
 * An `order` orchestrator checks stock, prices the order with three parallel quotes (which reply to
 * one workflow and contend for its lock), ships it through a child `shipment` workflow, and asks a
 * human for approval through a domained event that this script answers. Meanwhile a broken legacy
 * service receives a few events and fails them: they end up in the dead-letter queue.
 *
 * Flags: `--workflows N` (default 300).
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type ArvoEvent, createArvoContract, createArvoEvent } from 'arvo-core';
import { ArvoEventHandler, ExecutionViolation } from 'arvo-event-handler';
import {
  connectPostgresMachineMemory,
  PostgresEventBroker,
  redactSecrets,
  silentLogger,
} from 'arvo-postgres';
import pg from 'pg';
import { z } from 'zod';
import { type PostgresServer, startEmbeddedPostgres } from '../test/support/postgres-server';
import {
  createInitEvent,
  createServiceFixture as createService,
  createOrchestratorFixture as createStepOrchestrator,
  serviceReplyType,
} from './step-orchestrator';

const INITIATOR = 'com.demo.shop';
const APPROVAL = 'com.demo.approval';
const LEGACY_BILLING = 'com.demo.legacy.billing';

function parseWorkflowCount(): number {
  const index = process.argv.indexOf('--workflows');
  const value = index >= 0 ? Number(process.argv[index + 1]) : 300;
  if (!Number.isInteger(value) || value < 1 || value > 100_000) {
    console.error('--workflows expects a whole number from 1 to 100000');
    process.exit(2);
  }
  return value;
}

/** A one-line progress bar (rewritten in place on a terminal, every 10 % otherwise). */
function progressBar(total: number): (done: number) => void {
  let lastDecile = -1;
  return (done) => {
    const ratio = done / total;
    const width = 30;
    const filled = Math.round(ratio * width);
    const line = `  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} workflows`;
    if (process.stdout.isTTY) {
      process.stdout.write(`\r${line}${done === total ? '\n' : ''}`);
    } else if (Math.floor(ratio * 10) > lastDecile) {
      lastDecile = Math.floor(ratio * 10);
      console.log(line);
    }
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** A service that always fails with an ExecutionViolation: the broker dead-letters it at once. */
function createBrokenService(type: string) {
  return new ArvoEventHandler({
    contract: createArvoContract({
      uri: `#/demo/${type}`,
      type,
      versions: { '1.0.0': { accepts: z.object({ invoice: z.number() }), emits: {} } },
    }),
    executionunits: 1,
    handler: {
      '1.0.0': async () => {
        throw new ExecutionViolation('legacy billing is switched off (connection refused by billing host)');
      },
    } as any,
  });
}

/** The demo's schemas: `arvo_demo` (workflow memory) and `arvo_demo_pgboss` (queues). */
const DEMO_SCHEMA = 'arvo_demo';

async function main(): Promise<void> {
  const workflows = parseWorkflowCount();
  const started = Date.now();

  // With a context manager registered, arvo hands its spans to OpenTelemetry instead of printing them.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);

  let server: PostgresServer | undefined;
  let connectionString = process.env.DATABASE_URL;
  if (!connectionString) {
    process.stdout.write('Starting an embedded PostgreSQL 18… ');
    server = await startEmbeddedPostgres();
    connectionString = server.url;
    console.log('ready.');
  }

  // One pool shared by the memory and the broker's handler transactions.
  const pool = new pg.Pool({ connectionString, max: 20 });
  // node-postgres requires this: a pooled connection that fails (the server stopping below, even
  // after pool.end(), whose connections may still be closing) is otherwise an uncaught exception.
  let shuttingDown = false;
  pool.on('error', (error) => {
    if (!shuttingDown) console.warn(`demo pool: ${redactSecrets(error.message)}`);
  });
  // Schemas of the demo's own, so a DATABASE_URL that points at a real database keeps its workflow
  // tables and pg-boss queues: the demo starts both of its schemas afresh.
  await pool.query(`DROP SCHEMA IF EXISTS ${DEMO_SCHEMA}_pgboss CASCADE`);
  const memory = await connectPostgresMachineMemory({
    pool,
    schema: DEMO_SCHEMA,
    migrate: 'drop_and_recreate',
  });
  const broker = new PostgresEventBroker({ pool, schema: `${DEMO_SCHEMA}_pgboss`, logger: silentLogger });

  // The workflows: an order (parent) with a shipment (child).
  await broker.register(
    createStepOrchestrator({
      name: 'order',
      memory,
      steps: [
        { call: 'com.demo.inventory' },
        { fanOut: 'com.demo.quote', count: 3 },
        { child: 'shipment' },
        { ask: APPROVAL, domain: 'human.interaction' },
      ],
    }),
  );
  await broker.register(
    createStepOrchestrator({ name: 'shipment', memory, steps: [{ call: 'com.demo.carrier' }] }),
  );
  for (const service of ['com.demo.inventory', 'com.demo.quote', 'com.demo.carrier']) {
    await broker.register(createService(service));
  }
  await broker.register(createBrokenService(LEGACY_BILLING), { worker: { retryLimit: 0 } });

  // The human in the loop: approve every order that asks, by dispatching the reply.
  let approvals = 0;
  await broker.onDomainedEvent(async (event: ArvoEvent) => {
    approvals += 1;
    await broker.dispatch(
      createArvoEvent(
        {
          source: 'com.demo.approver',
          type: serviceReplyType(event.type),
          subject: event.subject,
          to: event.redirectto ?? event.source,
          data: { approved: true, by: 'demo' },
          ...(event.traceparent ? { traceparent: event.traceparent } : {}),
        },
        {},
        { disable: true },
      ),
    );
  });

  // Completions come back to the initiator.
  const dispatchedAt = new Map<string, number>();
  const latencies: number[] = [];
  const outcomes = new Map<string, number>();
  const report = progressBar(workflows);
  let finished = 0;
  let resolveAll!: () => void;
  const allFinished = new Promise<void>((resolve) => {
    resolveAll = resolve;
  });
  /** Workflows run one at a time after the burst, by subject: resolved with their completion. */
  const idleRuns = new Map<string, () => void>();
  await broker.onWorkflowComplete({
    source: INITIATOR,
    listener: async (event) => {
      const idleRun = idleRuns.get(event.subject);
      if (idleRun) {
        idleRuns.delete(event.subject);
        idleRun();
        return;
      }
      const sentAt = dispatchedAt.get(event.subject);
      if (sentAt === undefined) return; // a redelivery of a workflow already counted
      dispatchedAt.delete(event.subject);
      latencies.push(Date.now() - sentAt);
      const status = String((event.data as { status?: unknown }).status);
      outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
      finished += 1;
      report(finished);
      if (finished === workflows) resolveAll();
    },
  });

  await broker.start();
  console.log(`Broker started; queues: ${broker.queues.join(', ')}`);

  console.log(`Dispatching ${workflows} order workflows and 3 legacy billing events…`);
  const dispatchStarted = Date.now();
  await Promise.all(
    Array.from({ length: workflows }, async (_, index) => {
      const init = createInitEvent('order', { initiator: INITIATOR, data: { order: index + 1 } });
      dispatchedAt.set(init.subject, Date.now());
      await broker.dispatch(init);
    }),
  );
  for (let invoice = 1; invoice <= 3; invoice++) {
    await broker.dispatch(
      createArvoEvent(
        {
          source: INITIATOR,
          type: LEGACY_BILLING,
          subject: `invoice-${invoice}`,
          to: LEGACY_BILLING,
          data: { invoice },
        },
        {},
        { disable: true },
      ),
    );
  }

  const timeout = setTimeout(() => {
    console.error(`\nTimed out: ${finished}/${workflows} workflows finished after 120 s`);
    process.exit(1);
  }, 120_000);
  await allFinished;
  clearTimeout(timeout);
  const elapsedMs = Date.now() - dispatchStarted;

  latencies.sort((a, b) => a - b);
  const hops = 16; // messages per order workflow, child included
  console.log('\nResults');
  console.log(
    `  ${workflows} workflows finished in ${(elapsedMs / 1000).toFixed(1)} s: ` +
      `${(workflows / (elapsedMs / 1000)).toFixed(1)} workflows/s, ~${Math.round((workflows * hops) / (elapsedMs / 1000))} events/s`,
  );
  console.log(`  outcomes: ${[...outcomes].map(([status, count]) => `${status} ${count}`).join(', ')}`);
  console.log(`  approvals answered through the domained queue: ${approvals}`);
  console.log(
    `  end-to-end latency under the burst: p50 ${percentile(latencies, 50)} ms, p95 ${percentile(latencies, 95)} ms, max ${latencies.at(-1)} ms`,
  );
  console.log(
    `    (mostly queueing: all ${workflows} workflows were dispatched at once, so each waits behind the others' ${hops} hops)`,
  );

  // The same workflow on the idle broker, one at a time: the latency a lone request sees.
  const idleLatencies: number[] = [];
  const idleTimeout = setTimeout(() => {
    console.error('\nTimed out: a workflow on the idle broker did not finish within 60 s');
    process.exit(1);
  }, 60_000);
  for (let run = 0; run < 3; run++) {
    const init = createInitEvent('order', { initiator: INITIATOR, data: { order: workflows + run + 1 } });
    const completed = new Promise<void>((resolve) => idleRuns.set(init.subject, resolve));
    const sentAt = Date.now();
    await broker.dispatch(init);
    await completed;
    idleLatencies.push(Date.now() - sentAt);
  }
  clearTimeout(idleTimeout);
  idleLatencies.sort((a, b) => a - b);
  console.log(
    `  end-to-end latency of one workflow on the idle broker: p50 ${percentile(idleLatencies, 50)} ms ` +
      `(${idleLatencies.length} runs one after another: ${idleLatencies.join(', ')} ms)`,
  );

  // Let the last completions commit and the dead letters land before taking the snapshot.
  const deadline = Date.now() + 10_000;
  let stats = await broker.getStats();
  const settled = () =>
    stats.every((entry) => entry.active === 0) &&
    (stats.find((entry) => entry.name === LEGACY_BILLING)?.deadLettered ?? 0) >= 3;
  while (!settled() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    stats = await broker.getStats();
  }

  console.log('\nQueues (broker.getStats())');
  console.table(
    Object.fromEntries(
      stats.map(({ name, ...counts }) => [
        name,
        { ...counts, oldestQueuedAgeMs: counts.oldestQueuedAgeMs ?? '-' },
      ]),
    ),
  );

  const deadLetters = await broker.deadLetters.list();
  console.log('Dead letters (broker.deadLetters.list())');
  console.table(
    deadLetters.map((letter) => ({
      from: letter.sourceQueue,
      subject: letter.event.subject,
      attempts: letter.totalAttempts,
      kind: (letter.failure as { kind?: string } | null)?.kind,
      error: letter.error?.message,
    })),
  );

  await broker.stop({ timeoutMs: 5_000 });
  await memory.close();
  shuttingDown = true;
  await pool.end();
  await server?.stop();
  contextManager.disable();
  console.log(`Stopped cleanly after ${((Date.now() - started) / 1000).toFixed(1)} s.`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
