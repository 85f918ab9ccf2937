/**
 * The workflow every reliability test runs, shared by the test files and the child-process
 * workers: orchestrator `arvo.orc.rel` calls `com.rel.step`, then fans out to two `com.rel.fan`
 * calls, then completes to `com.test.client`. Per workflow: 4 consumed events (init + 3 replies)
 * and 4 produced events (3 calls + the completion).
 */
import { PostgresEventBroker, type PostgresEventBrokerOptions } from '../../src/broker/index';
import { connectPostgresMachineMemory, type PostgresMachineMemory } from '../../src/memory/index';
import { silentLogger } from '../../src/shared/logger';
import { createOrchestratorFixture, createServiceFixture, type FixtureStep } from '../support/orchestrator';

export const ORCHESTRATOR = 'rel';
export const INITIATOR = 'com.test.client';
export const STEPS: FixtureStep[] = [{ call: 'com.rel.step' }, { fanOut: 'com.rel.fan', count: 2 }];
/** Events applied to (and emitted by) each workflow record. */
export const CONSUMED_PER_WORKFLOW = 4;
export const PRODUCED_PER_WORKFLOW = 4;

/** A broker serving the orchestrator and both services, with its memory in the same database. */
export async function startWorkflowWorker(
  url: string,
  options: {
    broker?: Omit<PostgresEventBrokerOptions, 'connectionString'>;
    lockTtlMs?: number;
    serviceDelayMs?: number;
  } = {},
): Promise<{ broker: PostgresEventBroker; memory: PostgresMachineMemory }> {
  const memory = await connectPostgresMachineMemory({
    connectionString: url,
    logger: silentLogger,
    lock: { ttlMs: options.lockTtlMs ?? 3000, maxAttempts: 2 },
  });
  const broker = new PostgresEventBroker({
    connectionString: url,
    logger: silentLogger,
    ...options.broker,
  });
  await broker.register(createOrchestratorFixture({ name: ORCHESTRATOR, memory, steps: STEPS }));
  const delay = options.serviceDelayMs ? { delayMs: options.serviceDelayMs } : {};
  await broker.register(createServiceFixture('com.rel.step', delay));
  await broker.register(createServiceFixture('com.rel.fan', delay));
  await broker.start();
  return { broker, memory };
}
