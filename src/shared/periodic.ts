import { ArvoPostgresError } from './errors';
import { type Logger, writeLog } from './logger';
import { MAX_TIMER_MS } from './options';
import { describeError } from './redact';

/** A task {@link startPeriodic} runs. */
export interface PeriodicTask {
  /**
   * Ends the schedule: no run starts after this call. Resolves once a run in progress has finished
   * (never rejects), so the caller can end the pool the task uses.
   */
  stop(): Promise<void>;
}

/**
 * Runs `task` every `intervalMs` until stopped; with `intervalMs` 0 it never runs, and an interval
 * over {@link MAX_TIMER_MS} is refused. The timer never keeps the process alive, a run still going
 * when the next is due is not overlapped (that tick is skipped), and a failed run (also one that
 * throws synchronously) is logged to `logger` as a warning with `failureMessage`.
 */
export function startPeriodic(
  intervalMs: number,
  task: () => Promise<unknown>,
  logger: Logger,
  failureMessage: string,
): PeriodicTask {
  if (!Number.isInteger(intervalMs) || intervalMs > MAX_TIMER_MS) {
    // Node would run it every millisecond instead; callers validate their option before this.
    throw new ArvoPostgresError(
      'INVALID_INTERVAL',
      `a periodic interval must be an integer of at most ${MAX_TIMER_MS} ms, got ${intervalMs}`,
    );
  }
  if (intervalMs <= 0) return { stop: async () => {} };
  let stopped = false;
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = Promise.resolve()
      .then(task)
      .then(
        () => {},
        (error: unknown) => writeLog(logger, 'warn', failureMessage, { error: describeError(error) }),
      )
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
      return running ?? Promise.resolve();
    },
  };
}
