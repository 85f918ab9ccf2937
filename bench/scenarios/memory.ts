/**
 * Scenario 5 — machine memory: the orchestrator's cycle lock → read → write → unlock on distinct
 * subjects against `PostgresMachineMemory`, without the broker. Every statement the memory sends
 * is counted at the pool, so "round trips per lock+read and per write+unlock" is measured.
 */
import { ArvoOrchestrationSubject } from 'arvo-core';
import pg from 'pg';
import { connectPostgresMachineMemory, releasePostgresMachineMemory } from '../../src/memory/index';
import {
  checkTarget,
  costPer,
  countRoundTrips,
  now,
  poolUsage,
  type Scenario,
  startCostMeter,
  summarize,
} from '../lib';

const ORCHESTRATOR = 'arvo.orc.bench';
/** Concurrent cycles in the throughput pass (a broker runs about this many handlers at once). */
const CONCURRENCY = 8;

/** A record shaped like the fixture orchestrator's (about 1 KB of JSON once a few steps ran). */
function workflowRecord(subject: string, step: number): Record<string, unknown> {
  return {
    subject,
    orchestrator: ORCHESTRATOR,
    parentSubject: null,
    initiator: 'com.bench.client',
    status: 'active',
    executionStatus: 'normal',
    step,
    pending: 1,
    results: Array.from({ length: step }, (_, index) => ({
      type: 'evt.com.bench.service.success',
      data: { service: 'com.bench.service', input: { step: index } },
    })),
    consumed: Array.from({ length: step + 1 }, () => crypto.randomUUID()),
    produced: Array.from({ length: step + 1 }, () => crypto.randomUUID()),
    error: null,
  };
}

function newSubject(): string {
  return ArvoOrchestrationSubject.new({
    orchestator: ORCHESTRATOR,
    version: '1.0.0',
    initiator: 'com.bench.client',
  });
}

export const memoryScenario: Scenario = {
  id: 5,
  name: 'memory',
  title: 'machine memory: lock → read → write → unlock cycles on distinct subjects',
  async run({ quick, databaseUrl, log }) {
    const subjects = quick ? 300 : 2000;
    const pool = new pg.Pool({ connectionString: databaseUrl, max: CONCURRENCY + 2 });
    pool.on('error', () => {});
    const statements = countRoundTrips(pool);
    const memory = await connectPostgresMachineMemory({ pool });
    try {
      const names = Array.from({ length: subjects }, newSubject);
      const lockRead: number[] = [];
      const writeUnlock: number[] = [];

      /** One orchestrator cycle; round trips are counted only when `count` (no other cycle in flight). */
      const cycle = async (subject: string, step: number, count: boolean): Promise<void> => {
        if (count) statements.reset();
        if (!(await memory.lock(subject))) throw new Error(`lock of a free subject failed: ${subject}`);
        const previous = await memory.read(subject);
        if (count) {
          lockRead.push(statements.count);
          statements.reset();
        }
        await memory.write(subject, workflowRecord(subject, step), previous);
        await memory.unlock(subject);
        if (count) writeUnlock.push(statements.count);
      };

      // Pass 1, one cycle at a time: creates every record; exact round-trip counts and idle latency.
      log(`${subjects} create cycles one at a time`);
      const createLatencies: number[] = [];
      for (const subject of names) {
        const started = now();
        await cycle(subject, 0, true);
        createLatencies.push(now() - started);
      }
      const createLockRead = [...lockRead];
      const createWriteUnlock = [...writeUnlock];
      lockRead.length = 0;
      writeUnlock.length = 0;

      // Pass 2, one at a time: compare-and-swap updates of existing records.
      log(`${subjects} update cycles one at a time`);
      const updateLatencies: number[] = [];
      for (const subject of names) {
        const started = now();
        await cycle(subject, 1, true);
        updateLatencies.push(now() - started);
      }

      // Pass 3, CONCURRENCY cycles in flight on distinct subjects: throughput.
      log(`${subjects} update cycles, ${CONCURRENCY} at a time`);
      const before = poolUsage(pool);
      const concurrentLatencies: number[] = [];
      let next = 0;
      const meter = await startCostMeter(databaseUrl);
      const started = now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < names.length) {
            const subject = names[next] as string;
            next += 1;
            const cycleStarted = now();
            await cycle(subject, 2, false);
            concurrentLatencies.push(now() - cycleStarted);
          }
        }),
      );
      const cyclesPerSecond = subjects / ((now() - started) / 1000);
      const costPerCycle = costPer(await meter.stop(), subjects);
      const after = poolUsage(pool);

      if ([...createLockRead, ...createWriteUnlock, ...lockRead, ...writeUnlock].some((n) => n === 0)) {
        throw new Error(
          'the round-trip counter saw a memory call send no statement: instrumentation is broken',
        );
      }
      const worst = (counts: number[]) => Math.max(...counts);
      const mean = (counts: number[]) => counts.reduce((sum, n) => sum + n, 0) / counts.length;
      return {
        throughput: { value: cyclesPerSecond, unit: 'cycles/s' },
        latency: { ...summarize(concurrentLatencies), of: `cycle (${CONCURRENCY} in flight)` },
        ratio: null,
        targets: [
          checkTarget(
            'round trips per lock+read (create)',
            '≤ 2',
            worst(createLockRead),
            (v) => v <= 2,
            String,
          ),
          checkTarget(
            'round trips per write+unlock (create)',
            '≤ 2',
            worst(createWriteUnlock),
            (v) => v <= 2,
            String,
          ),
          checkTarget('round trips per lock+read (update)', '≤ 2', worst(lockRead), (v) => v <= 2, String),
          checkTarget(
            'round trips per write+unlock (update)',
            '≤ 2',
            worst(writeUnlock),
            (v) => v <= 2,
            String,
          ),
        ],
        details: {
          subjects,
          concurrency: CONCURRENCY,
          cyclesPerSecond,
          costPerCycle: costPerCycle,
          operationsPerSecond: cyclesPerSecond * 4,
          roundTrips: {
            createLockRead: { max: worst(createLockRead), mean: mean(createLockRead) },
            createWriteUnlock: { max: worst(createWriteUnlock), mean: mean(createWriteUnlock) },
            updateLockRead: { max: worst(lockRead), mean: mean(lockRead) },
            updateWriteUnlock: { max: worst(writeUnlock), mean: mean(writeUnlock) },
          },
          createCycleLatencyMs: summarize(createLatencies),
          updateCycleLatencyMs: summarize(updateLatencies),
          concurrentCycleLatencyMs: summarize(concurrentLatencies),
        },
        cost: { per: 'cycle', ...costPerCycle },
        pool: { before, after },
      };
    } finally {
      await releasePostgresMachineMemory(memory);
      await pool.end();
    }
  },
};
