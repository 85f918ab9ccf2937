/** How often and how long to retry: attempts in total, and an exponential wait between them. */
export interface Backoff {
  /** Attempts in total (1 = no retry). */
  maxAttempts: number;
  /** Ceiling of the wait before the second attempt, in ms. */
  initialDelayMs: number;
  /** Each further ceiling is the previous one times this factor. */
  backoffExponent: number;
  /** Upper bound of every ceiling, in ms. */
  maxDelayMs: number;
}

/**
 * The wait before attempt `attempt + 1` (attempt counts from 1), with full jitter: uniform between 0
 * and the exponential ceiling, so waiters that collided once do not collide again in lockstep
 * (`random` returns a number in [0, 1), like `Math.random`).
 */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(
    backoff.initialDelayMs * backoff.backoffExponent ** (attempt - 1),
    backoff.maxDelayMs,
  );
  return random() * ceiling;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Calls `attempt` until it returns something other than `null`, at most `backoff.maxAttempts` times,
 * waiting {@link backoffDelay} between calls; `null` when every attempt returned `null`.
 */
export async function retryWithBackoff<T>(
  backoff: Backoff,
  attempt: () => Promise<T | null>,
): Promise<T | null> {
  for (let count = 1; ; count++) {
    const result = await attempt();
    if (result !== null || count >= backoff.maxAttempts) return result;
    await sleep(backoffDelay(backoff, count));
  }
}
