import { type Logger, writeLog } from '../shared/logger';
import { closePool, type ManagedPool } from '../shared/pool';
import { describeError } from '../shared/redact';
import { type Consumer, settleWithin } from './consumer';
import type { PgBossClient } from './pgboss';
import type { UnsettledAttempts } from './unsettled';

/**
 * The end of `stop()`: pg-boss stops fetching and waits for the handlers in flight; at `timeoutMs`
 * the consumer hands the jobs still held back to their queues, and pg-boss's own deadline comes
 * later, so its fail finds them handed back, not held (docs/design.md, "Stopping"). Then the
 * handlers get a moment to roll back and the connections close.
 */
export async function shutDown(
  boss: PgBossClient | undefined,
  consumer: Consumer | undefined,
  unsettled: UnsettledAttempts,
  pool: ManagedPool | undefined,
  timeoutMs: number,
): Promise<void> {
  const handBack = setTimeout(() => consumer?.handBack(), timeoutMs);
  try {
    await boss?.stop({ graceful: true, timeout: timeoutMs + 2000, close: true });
  } finally {
    clearTimeout(handBack);
    // pg-boss has aborted what was still running: give those handlers a moment to roll back
    // before the pool closes under them.
    await consumer?.drain(2000);
    await unsettled.stop();
    // A handler that never returns would keep its connection checked out and pool.end() waiting.
    if (pool) await settleWithin([closePool(pool).catch(() => {})], 5000);
  }
}

/** Options of `PostgresEventBroker.stopOnSignals`. */
export interface StopOnSignalsOptions {
  /** The signals that stop the broker (default `['SIGTERM', 'SIGINT']`). */
  signals?: NodeJS.Signals[];
  /**
   * How long handlers in flight may finish before their jobs are handed back to their queues
   * (default 30 s). Keep it a few seconds below the platform's kill deadline (Kubernetes'
   * `terminationGracePeriodSeconds`, 30 s by default).
   */
  timeoutMs?: number;
  /** Exit the process once stopped (default true): code 0, or 1 when stopping failed. */
  exit?: boolean;
}

/**
 * Stops with `stop(timeoutMs)` on the first of `signals`, then exits unless `exit` is false; a second
 * signal while stopping exits at once (code 1). Returns a function that removes the signal listeners.
 */
export function stopOnSignals(
  { signals, timeoutMs, exit }: Required<StopOnSignalsOptions>,
  stop: (timeoutMs: number) => Promise<void>,
  logger: () => Logger,
): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      writeLog(logger(), 'warn', `arvo-postgres broker: ${signal} again while stopping; exiting now`);
      process.exit(1);
    }
    stopping = true;
    writeLog(logger(), 'info', `arvo-postgres broker: ${signal} received; stopping`);
    stop(timeoutMs).then(
      () => {
        if (exit) process.exit(0);
      },
      (error) => {
        writeLog(logger(), 'error', 'arvo-postgres broker: stop failed', { error: describeError(error) });
        if (exit) process.exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
}
