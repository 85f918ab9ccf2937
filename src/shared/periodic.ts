import { type Logger, writeLog } from './logger';
import { describeError } from './redact';

/** A task {@link startPeriodic} runs; `stop()` ends it (a run in progress finishes on its own). */
export interface PeriodicTask {
  stop(): void;
}

/**
 * Runs `task` every `intervalMs` until stopped; with `intervalMs` 0 it never runs. The timer never
 * keeps the process alive, a run still going when the next is due is not overlapped (that tick is
 * skipped), and a failed run is logged to `logger` as a warning with `failureMessage`.
 */
export function startPeriodic(
  intervalMs: number,
  task: () => Promise<unknown>,
  logger: Logger,
  failureMessage: string,
): PeriodicTask {
  if (intervalMs <= 0) return { stop() {} };
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    task()
      .catch((error: unknown) => writeLog(logger, 'warn', failureMessage, { error: describeError(error) }))
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
