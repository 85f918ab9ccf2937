/**
 * The rig shared by the broker scenarios (1, 2, 3, 6): a `PostgresEventBroker` and a
 * `PostgresMachineMemory` on one shared pool, the benchmark orchestrator (`bench/orchestrator.ts`:
 * an xstate machine behind Arvo contracts, lock → read → compute → write → unlock) and its
 * service, plus the instruments: per-hop latency (event
 * creation → the next handler starts), per-workflow latency, lock contention, statements sent.
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import type { ArvoEvent } from 'arvo-core';
import pg from 'pg';
import { PostgresEventBroker, type PostgresEventBrokerOptions } from '../src/broker/index';
import {
  connectPostgresMachineMemory,
  type PostgresMachineMemory,
  releasePostgresMachineMemory,
} from '../src/memory/index';
import { silentLogger } from '../src/shared/logger';
import {
  type CostPerUnit,
  costPer,
  countdown,
  countRoundTrips,
  heapUsedAfterGc,
  now,
  type PoolUsage,
  poolUsage,
  startCostMeter,
  withTimeout,
} from './lib';
import {
  type BenchHandler,
  type BenchMachineRecord,
  createBenchInit,
  createBenchOrchestrator,
  createBenchService,
  hopsPerWorkflow,
} from './orchestrator';

// Arvo prints its spans to the console when no context manager is registered.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

/** Where the rig's tables live (the libraries' defaults, spelled out for scenario 6's seeding). */
export const RIG_TABLES = {
  pgBossSchema: 'pgboss',
  memorySchema: 'public',
  stateTable: 'arvo_workflow_state',
};

/** The initiator: completions are delivered to the broker's workflow-completion listener. */
export const INITIATOR = 'com.bench.client';

/** Scenario 1's workflow: 3 calls in sequence, then completion = 8 hops. */
export const SEQUENTIAL_STEPS: readonly number[] = [1, 1, 1];

/** Wall clock with sub-millisecond precision. */
function epochNow(): number {
  return performance.timeOrigin + now();
}

/** Makes `handler.execute` record how long each event waited since it was created. */
function instrument(handler: BenchHandler, onDelivery: (event: ArvoEvent) => void): BenchHandler {
  const execute = handler.execute.bind(handler);
  handler.execute = (event, options) => {
    onDelivery(event);
    return execute(event, options);
  };
  return handler;
}

/** One measured batch of workflows. */
export interface WorkflowRun {
  workflows: number;
  hops: number;
  elapsedSeconds: number;
  workflowsPerSecond: number;
  hopsPerSecond: number;
  /** Event creation → start of its last (successful) delivery, ms; one sample per event. */
  hopLatencies: number[];
  /** Handler deliveries, including redeliveries after lock contention or retries. */
  deliveries: number;
  /** Dispatch of the init event → the completion listener received the result, ms. */
  workflowLatencies: number[];
  /** `lock()` calls that returned false: each becomes a lock-contention reschedule in the broker. */
  lockContention: number;
  /** Statements sent over the shared pool per hop (broker + memory, not pg-boss's own pool). */
  statementsPerHop: number;
  /** CPU (this process, the server), write transactions and WAL per hop. */
  costPerHop: CostPerUnit;
  /** Completions whose data said the workflow failed. */
  failedWorkflows: number;
  pool: { before: PoolUsage; after: PoolUsage };
}

export interface WorkflowRig {
  broker: PostgresEventBroker;
  pool: pg.Pool;
  /** Dispatches `count` workflows at once (`burst`) or one after the other (`sequential`). */
  run(count: number, mode: 'burst' | 'sequential', timeoutMs: number): Promise<WorkflowRun>;
  stop(): Promise<void>;
}

/** Broker options a scenario varies (the event history on or off). */
export type RigBrokerOptions = Pick<PostgresEventBrokerOptions, 'history'>;

/** A broker and a memory on `pool`, in {@link RIG_TABLES} (also each worker process's pair). */
export async function connectBrokerAndMemory(
  pool: pg.Pool,
  brokerOptions: RigBrokerOptions = {},
): Promise<{ memory: PostgresMachineMemory<BenchMachineRecord>; broker: PostgresEventBroker }> {
  const memory = await connectPostgresMachineMemory<BenchMachineRecord>({
    pool,
    schema: RIG_TABLES.memorySchema,
    tables: { state: RIG_TABLES.stateTable },
    logger: silentLogger,
  });
  const broker = new PostgresEventBroker({
    pool,
    schema: RIG_TABLES.pgBossSchema,
    logger: silentLogger,
    ...brokerOptions,
  });
  return { memory, broker };
}

/** Starts broker, memory, orchestrator and service on a fresh database. */
export async function startWorkflowRig(
  databaseUrl: string,
  steps: readonly number[],
  brokerOptions: RigBrokerOptions = {},
): Promise<WorkflowRig> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
  pool.on('error', () => {});
  const statements = countRoundTrips(pool);
  const { memory, broker } = await connectBrokerAndMemory(pool, brokerOptions);

  // Keyed by event id: a redelivered event (lock contention) counts once, at its last delivery.
  let hopLatencies = new Map<string, number>();
  let deliveries = 0;
  let lockContention = 0;
  const recordHop = (event: ArvoEvent) => {
    deliveries += 1;
    hopLatencies.set(event.id, epochNow() - Date.parse(event.time));
  };
  const lock = memory.lock.bind(memory);
  memory.lock = async (subject: string) => {
    const locked = await lock(subject);
    if (!locked) lockContention += 1;
    return locked;
  };

  await broker.register(instrument(createBenchOrchestrator({ memory, callsPerStep: steps }), recordHop));
  await broker.register(instrument(createBenchService(), recordHop));

  const dispatchedAt = new Map<string, number>();
  let onCompletion: (failed: boolean) => void = () => {};
  let workflowLatencies: number[] = [];
  await broker.onWorkflowComplete({
    source: INITIATOR,
    listener: async (event: ArvoEvent) => {
      recordHop(event);
      const started = dispatchedAt.get(event.subject);
      if (started !== undefined) {
        workflowLatencies.push(epochNow() - started);
        dispatchedAt.delete(event.subject);
        onCompletion((event.data as { status?: string }).status === 'failure');
      }
    },
  });
  await broker.start();

  const dispatchOne = async () => {
    const init = createBenchInit(INITIATOR);
    dispatchedAt.set(init.subject, epochNow());
    await broker.dispatch(init);
  };

  return {
    broker,
    pool,
    async run(count, mode, timeoutMs) {
      hopLatencies = new Map();
      deliveries = 0;
      workflowLatencies = [];
      lockContention = 0;
      let failedWorkflows = 0;
      const before = poolUsage(pool);
      statements.reset();
      const finished = countdown(count);
      let current: ReturnType<typeof countdown> | undefined;
      onCompletion = (failed) => {
        if (failed) failedWorkflows += 1;
        finished.tick();
        current?.tick();
      };
      const heapBefore = heapUsedAfterGc();
      const meter = await startCostMeter(databaseUrl);
      const started = now();
      if (mode === 'burst') {
        await Promise.all(Array.from({ length: count }, dispatchOne));
      } else {
        for (let index = 0; index < count; index += 1) {
          current = countdown(1);
          await dispatchOne();
          await withTimeout(current.done, 30_000, `sequential workflow ${index + 1} of ${count}`);
        }
      }
      await withTimeout(
        finished.done,
        timeoutMs,
        `${count} workflows (${finished.remaining()} still running)`,
      );
      const elapsedSeconds = (now() - started) / 1000;
      const usage = await meter.stop();
      const hops = count * hopsPerWorkflow(steps);
      // Settle what the last completions left in flight, then see what stays.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const retainedHeapBytesPerHop = Math.round((heapUsedAfterGc() - heapBefore) / hops);
      return {
        workflows: count,
        hops,
        elapsedSeconds,
        workflowsPerSecond: count / elapsedSeconds,
        hopsPerSecond: hops / elapsedSeconds,
        hopLatencies: [...hopLatencies.values()],
        deliveries,
        workflowLatencies,
        lockContention,
        statementsPerHop: statements.count / hops,
        costPerHop: { ...costPer(usage, hops), retainedHeapBytes: retainedHeapBytesPerHop },
        failedWorkflows,
        pool: { before, after: poolUsage(pool) },
      };
    },
    async stop() {
      await broker.stop({ timeoutMs: 10_000 });
      await releasePostgresMachineMemory(memory);
      await pool.end();
    },
  };
}
