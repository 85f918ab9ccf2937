/**
 * Scenario 7 — three worker processes on one database: scenario 1's workflow served by three child
 * processes (`bench/worker-process.ts`), each with its own broker, memory and pool, while this
 * process only dispatches and listens for completions. Reports throughput and proves that nothing
 * ran twice: every orchestrator transition and every service call is noted by event id in the
 * process that ran it, and the ids of all three are compared.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ArvoEvent } from 'arvo-core';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { qualifiedName } from '../../src/shared/identifiers';
import { silentLogger } from '../../src/shared/logger';
import {
  checkTarget,
  costPer,
  countdown,
  now,
  type Scenario,
  startCostMeter,
  summarize,
  withTimeout,
} from '../lib';
import { createBenchInit, hopsPerWorkflow } from '../orchestrator';
import type { ParentMessage, WorkerMessage } from '../worker-process';
import { INITIATOR, RIG_TABLES, SEQUENTIAL_STEPS } from '../workflow';

const WORKERS = 3;
const WORKER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'worker-process.ts');
/** Per workflow: the init and 3 replies applied by the orchestrator, 3 calls executed by the service. */
const APPLIED_PER_WORKFLOW = 1 + SEQUENTIAL_STEPS.length;
/**
 * Dispatches in flight at once. A thousand at once would queue for the client's pool behind the
 * workers' load, past `dispatch`'s call timeout (it counts the wait for a connection).
 */
const DISPATCHES_IN_FLIGHT = 50;
const EXECUTED_PER_WORKFLOW = SEQUENTIAL_STEPS.reduce((sum, calls) => sum + calls, 0);

interface Worker {
  child: ChildProcess;
  /** The next message from the worker. */
  next(): Promise<WorkerMessage>;
  send(message: ParentMessage): void;
}

function spawnWorker(databaseUrl: string): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER_SCRIPT], {
    env: { ...process.env, BENCH_DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiting: Array<(message: WorkerMessage) => void> = [];
  child.on('message', (message: WorkerMessage) => waiting.shift()?.(message));
  return {
    child,
    next: () =>
      withTimeout(
        new Promise<WorkerMessage>((resolve, reject) => {
          waiting.push(resolve);
          child.once('exit', (code) => reject(new Error(`worker ${child.pid} exited with ${code}`)));
        }),
        120_000,
        `worker ${child.pid}`,
      ),
    send: (message) => child.send(message),
  };
}

/** Ids noted more than once across all workers. */
function duplicates(ids: string[]): string[] {
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const id of ids) (seen.has(id) ? twice : seen).add(id);
  return [...twice];
}

/** Jobs of `queues` not completed, and jobs that used a retry. */
async function unfinishedAndRetried(databaseUrl: string, queues: string[]) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT count(*) FILTER (WHERE state <> 'completed')::int AS unfinished,
              count(*) FILTER (WHERE retry_count > 0)::int AS retried
       FROM ${qualifiedName(RIG_TABLES.pgBossSchema, 'job')} WHERE name = ANY($1::text[])`,
      [queues],
    );
    return rows[0] as { unfinished: number; retried: number };
  } finally {
    await client.end();
  }
}

export const workersScenario: Scenario = {
  id: 7,
  name: 'workers',
  title: `${WORKERS} worker processes on one database: scenario 1's workflow, nothing run twice`,
  async run({ quick, databaseUrl, earlier, log }) {
    const workflows = quick ? 100 : 1000;
    const hops = workflows * hopsPerWorkflow(SEQUENTIAL_STEPS);
    // This process dispatches and hears completions; it registers no handler.
    const client = new PostgresEventBroker({ connectionString: databaseUrl, logger: silentLogger });
    const dispatchedAt = new Map<string, number>();
    const completions = new Map<string, number>();
    const workflowLatencies: number[] = [];
    let finished = countdown(0);
    await client.onWorkflowComplete({
      source: INITIATOR,
      listener: (event: ArvoEvent) => {
        completions.set(event.subject, (completions.get(event.subject) ?? 0) + 1);
        const started = dispatchedAt.get(event.subject);
        if (started !== undefined) workflowLatencies.push(now() - started);
        finished.tick();
      },
    });
    await client.start();
    const workers: Worker[] = [];
    try {
      log(`starting ${WORKERS} worker processes`);
      for (let index = 0; index < WORKERS; index += 1) workers.push(spawnWorker(databaseUrl));
      await Promise.all(workers.map((worker) => worker.next()));
      const dispatch = async (count: number) => {
        finished = countdown(count);
        let left = count;
        await Promise.all(
          Array.from({ length: Math.min(count, DISPATCHES_IN_FLIGHT) }, async () => {
            while (left > 0) {
              left -= 1;
              const init = createBenchInit(INITIATOR);
              dispatchedAt.set(init.subject, now());
              await client.dispatch(init);
            }
          }),
        );
        await withTimeout(
          finished.done,
          300_000,
          `${count} workflows (${finished.remaining()} still running)`,
        );
      };
      await dispatch(20); // warm-up, unmeasured
      completions.clear();
      workflowLatencies.length = 0;

      for (const worker of workers) worker.send({ type: 'start' });
      log(`dispatching ${workflows} workflows at once`);
      const meter = await startCostMeter(databaseUrl);
      const started = now();
      await dispatch(workflows);
      const elapsedSeconds = (now() - started) / 1000;
      const usage = await meter.stop();
      const reports = await Promise.all(
        workers.map(async (worker) => {
          worker.send({ type: 'report' });
          return (await worker.next()) as Extract<WorkerMessage, { type: 'report' }>;
        }),
      );
      const workersCpuMs = reports.reduce((sum, report) => sum + report.cpuMs, 0);
      const costPerHop = costPer({ ...usage, nodeCpuMs: usage.nodeCpuMs + workersCpuMs }, hops);
      const applied = reports.flatMap((report) => report.applied);
      const executed = reports.flatMap((report) => report.executed);
      const appliedTwice = duplicates(applied).length;
      const executedTwice = duplicates(executed).length;
      const completedTwice = [...completions.values()].filter((count) => count > 1).length;
      const stats = await client.getStats();
      const failedJobs = stats.reduce((sum, queue) => sum + queue.failed + queue.deadLettered, 0);
      const jobs = await unfinishedAndRetried(databaseUrl, client.queues);
      const hopsPerSecond = hops / elapsedSeconds;
      const single = earlier.get('throughput')?.hopsPerSecond;
      return {
        throughput: { value: workflows / elapsedSeconds, unit: 'workflows/s' },
        hopsPerSecond,
        latency: { ...summarize(workflowLatencies), of: 'workflow (under load)' },
        ratio: single ? { to: 'scenario 1 hops/s (one process)', value: hopsPerSecond / single } : null,
        targets: [
          checkTarget(
            'workflows completed',
            `${workflows}`,
            completions.size,
            (v) => v === workflows,
            String,
          ),
          checkTarget(
            'events applied or executed twice',
            '0',
            appliedTwice + executedTwice + completedTwice,
            (v) => v === 0,
            String,
          ),
          checkTarget(
            'transitions + calls run',
            `${workflows * (APPLIED_PER_WORKFLOW + EXECUTED_PER_WORKFLOW)}`,
            applied.length + executed.length,
            (v) => v === workflows * (APPLIED_PER_WORKFLOW + EXECUTED_PER_WORKFLOW),
            String,
          ),
          checkTarget(
            'failed, dead-lettered, unfinished or retried jobs',
            '0',
            failedJobs + jobs.unfinished + jobs.retried,
            (v) => v === 0,
            String,
          ),
        ],
        details: {
          workers: WORKERS,
          workflows,
          hops,
          elapsedSeconds,
          hopsPerSecond,
          ratioToScenario1HopsPerSecond: single ? hopsPerSecond / single : null,
          workflowLatencyMs: summarize(workflowLatencies),
          perWorker: reports.map((report) => ({
            cpuMs: report.cpuMs,
            transitions: report.applied.length,
            calls: report.executed.length,
          })),
          appliedTwice,
          executedTwice,
          completedTwice,
          failedOrDeadLetteredJobs: failedJobs,
          unfinishedJobs: jobs.unfinished,
          retriedJobs: jobs.retried,
          costPerHop,
        },
        cost: { per: 'hop', ...costPerHop },
      };
    } finally {
      for (const worker of workers) if (worker.child.connected) worker.send({ type: 'stop' });
      await Promise.all(
        workers.map(
          (worker) =>
            new Promise<void>((resolve) => {
              if (worker.child.exitCode !== null) return resolve();
              const timer = setTimeout(() => worker.child.kill('SIGKILL'), 15_000);
              worker.child.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
            }),
        ),
      );
      await client.stop({ timeoutMs: 10_000 });
    }
  },
};
