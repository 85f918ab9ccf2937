/**
 * One worker process of the `workers` scenario: a broker and a memory on their own pool in
 * `BENCH_DATABASE_URL`, serving the benchmark orchestrator and service. It notes the id of every
 * event it applied or executed and talks to the parent over IPC: `ready` once started; on `start`
 * it forgets what it noted and starts its CPU clock; on `report` it sends the ids and its CPU
 * time; on `stop` it stops gracefully and exits.
 */
import pg from 'pg';
import { releasePostgresMachineMemory } from '../src/memory/index';
import { createBenchOrchestrator, createBenchService } from './orchestrator';
// Also registers the OpenTelemetry context manager Arvo needs to stay quiet.
import { connectBrokerAndMemory, SEQUENTIAL_STEPS } from './workflow';

/** What a worker sends its parent. */
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'report'; cpuMs: number; applied: string[]; executed: string[] };
/** What the parent sends a worker. */
export type ParentMessage = { type: 'start' | 'report' | 'stop' };

const url = process.env.BENCH_DATABASE_URL;
if (!url || !process.send)
  throw new Error('run by the workers scenario: BENCH_DATABASE_URL and an IPC channel');
const send = (message: WorkerMessage) => process.send?.(message);

let applied: string[] = [];
let executed: string[] = [];
let cpuStart = process.cpuUsage();

const pool = new pg.Pool({ connectionString: url, max: 10 });
pool.on('error', () => {});
const { memory, broker } = await connectBrokerAndMemory(pool);
await broker.register(
  createBenchOrchestrator({
    memory,
    callsPerStep: SEQUENTIAL_STEPS,
    onApplied: (event) => applied.push(event.id),
  }),
);
await broker.register(createBenchService({ onExecuted: (event) => executed.push(event.id) }));
await broker.start();

process.on('message', async (message: ParentMessage) => {
  if (message.type === 'start') {
    applied = [];
    executed = [];
    cpuStart = process.cpuUsage();
  } else if (message.type === 'report') {
    const cpu = process.cpuUsage(cpuStart);
    send({ type: 'report', cpuMs: (cpu.user + cpu.system) / 1000, applied, executed });
  } else {
    await broker.stop({ timeoutMs: 10_000 });
    await releasePostgresMachineMemory(memory);
    await pool.end();
    process.disconnect();
  }
});
send({ type: 'ready' });
