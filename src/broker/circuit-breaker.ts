import { integer, type OptionTable } from '../shared/options';
import { DatabaseUnavailableError, databaseUnavailable, isConnectionFailure } from './errors';

/** Options of the circuit breaker guarding `dispatch` while PostgreSQL is unreachable. */
export interface CircuitBreakerOptions {
  /**
   * Consecutive connection failures (or timeouts) of `dispatch` that open the circuit.
   * @defaultValue `3`
   */
  failureThreshold?: number;
  /**
   * How long an open circuit fails calls at once before one probe call may try again, in ms.
   * @defaultValue `2000`
   */
  resetTimeoutMs?: number;
  /**
   * Longest one guarded call may take before it fails with `DatabaseUnavailableError`, in ms.
   * @defaultValue `5000`
   */
  callTimeoutMs?: number;
}

export type ResolvedCircuitBreakerOptions = Required<CircuitBreakerOptions>;

/** `closed`: calls run; `open`: calls fail at once; `halfOpen`: one probe call runs, the others fail at once. */
export type CircuitState = 'closed' | 'open' | 'halfOpen';

/** The checks and defaults of {@link CircuitBreakerOptions}. */
export const CIRCUIT_BREAKER_OPTIONS = {
  failureThreshold: integer({ min: 1, max: 1000 }, 3),
  resetTimeoutMs: integer({ min: 1, max: 600_000 }, 2000),
  callTimeoutMs: integer({ min: 1, max: 600_000 }, 5000),
} satisfies OptionTable<CircuitBreakerOptions>;

/** The guarded call did not finish in time; treated like a connection failure. */
class CallTimeout extends Error {}

/**
 * A circuit breaker for calls that need PostgreSQL (`dispatch`). Every call is bounded by
 * `callTimeoutMs`, so a caller never hangs on a database that does not answer; connection failures
 * and timeouts become {@link DatabaseUnavailableError}. After `failureThreshold` of them in a row the
 * circuit opens: calls fail at once, without touching the pool, until `resetTimeoutMs` passed; then
 * a single probe call runs, and its success closes the circuit (its failure opens it again).
 * Errors that are not about reaching the database (a bad statement, a constraint) pass through and
 * count as a success of the connection.
 *
 * A call that timed out may still complete in the background: `DatabaseUnavailableError` means
 * "not known to be stored". Dispatching the same event again is safe (the job id derives from the
 * event id, so it is stored once).
 */
export class CircuitBreaker {
  readonly #options: ResolvedCircuitBreakerOptions;
  #state: CircuitState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probing = false;

  constructor(options: ResolvedCircuitBreakerOptions) {
    this.#options = options;
  }

  /** The current state (an open circuit whose reset time passed reports `halfOpen`). */
  get state(): CircuitState {
    if (this.#state === 'open' && Date.now() - this.#openedAt >= this.#options.resetTimeoutMs) {
      return 'halfOpen';
    }
    return this.#state;
  }

  /** Runs `call` through the breaker; `operation` names it in errors. */
  async run<T>(operation: string, call: () => Promise<T>): Promise<T> {
    const state = this.state;
    if (state === 'open' || (state === 'halfOpen' && this.#probing)) {
      const retryInMs = Math.max(0, this.#options.resetTimeoutMs - (Date.now() - this.#openedAt));
      throw new DatabaseUnavailableError(
        `Cannot ${operation}: PostgreSQL is unavailable (circuit open after ${this.#failures} consecutive connection failures; next probe in ${retryInMs} ms)`,
      );
    }
    const probe = state === 'halfOpen';
    if (probe) this.#probing = true;
    try {
      const result = await this.#withTimeout(call);
      this.#succeeded();
      return result;
    } catch (error) {
      const unavailable =
        error instanceof CallTimeout ||
        error instanceof DatabaseUnavailableError ||
        isConnectionFailure(error);
      if (!unavailable) {
        // The database answered: the connection is fine, whatever the statement did.
        this.#succeeded();
        throw error;
      }
      this.#failed();
      if (error instanceof DatabaseUnavailableError) throw error;
      throw databaseUnavailable(operation, error);
    } finally {
      if (probe) this.#probing = false;
    }
  }

  #withTimeout<T>(call: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new CallTimeout(`no answer within ${this.#options.callTimeoutMs} ms`)),
        this.#options.callTimeoutMs,
      );
    });
    const running = call();
    // A call abandoned by the timeout must not surface as an unhandled rejection later.
    running.catch(() => {});
    return Promise.race([running, timeout]).finally(() => clearTimeout(timer));
  }

  #succeeded(): void {
    this.#state = 'closed';
    this.#failures = 0;
  }

  #failed(): void {
    this.#failures += 1;
    if (this.#state !== 'closed' || this.#failures >= this.#options.failureThreshold) {
      this.#state = 'open';
      this.#openedAt = Date.now();
    }
  }
}
