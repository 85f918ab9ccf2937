import type { ArvoEvent } from 'arvo-core';
import { BrokerNotStartedError, ConcurrentResolveError, ResolveTimeoutError } from './errors';

interface Waiter {
  resolve(event: ArvoEvent): void;
  reject(error: unknown): void;
}

/**
 * The `resolve()` calls waiting for a reply: one at most per source and subject, since a reply
 * carries nothing else of its request.
 */
export class Replies {
  readonly #waiters = new Map<string, Waiter>();

  /**
   * Runs `send` and resolves with the reply to `source` and `subject` that `deliver` hands over,
   * or rejects with {@link ResolveTimeoutError} after `timeoutMs`.
   */
  async await(
    source: string,
    event: ArvoEvent,
    timeoutMs: number,
    send: () => Promise<unknown>,
  ): Promise<ArvoEvent> {
    const key = waiterKey(source, event.subject);
    if (this.#waiters.has(key)) throw new ConcurrentResolveError(source, event.subject);
    let waiter!: Waiter;
    const reply = new Promise<ArvoEvent>((resolve, reject) => {
      waiter = { resolve, reject };
    });
    // Rejected by stop() or the timer possibly while dispatch() is still running: never unhandled.
    reply.catch(() => {});
    this.#waiters.set(key, waiter);
    const timer = setTimeout(() => waiter.reject(new ResolveTimeoutError(event.id, timeoutMs)), timeoutMs);
    try {
      await send();
      return await reply;
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(key);
    }
  }

  /** Whether a `resolve()` waits for the reply `event` to `queue`. */
  isAwaited(queue: string, event: ArvoEvent): boolean {
    return this.#waiters.has(waiterKey(queue, event.subject));
  }

  /** Hands `event` to the `resolve()` waiting for it, if any (after its job committed). */
  deliver(queue: string, event: ArvoEvent): void {
    this.#waiters.get(waiterKey(queue, event.subject))?.resolve(event);
  }

  /** Rejects every waiting `resolve()`: the broker stopped. */
  rejectAll(): void {
    for (const waiter of this.#waiters.values()) {
      waiter.reject(new BrokerNotStartedError('resolve (the broker stopped)'));
    }
    this.#waiters.clear();
  }
}

function waiterKey(source: string, subject: string): string {
  return `${source}\u0000${subject}`;
}
