/**
 * Delivers events between fixture handlers in this process, without a broker: every event goes to the
 * handler whose `source` equals `event.to`; events for anyone else (a workflow's initiator) land in
 * `outbox`. Used to run the orchestrator fixture directly against a machine memory.
 */
import type { ArvoEvent } from 'arvo-core';
import type { FixtureHandler } from './orchestrator';

export interface DeliveryResult {
  /** Events addressed to no handler (completions for the initiator), in emission order. */
  outbox: ArvoEvent[];
  /** Every event handed to a handler, in delivery order (including redeliveries after retries). */
  delivered: ArvoEvent[];
  /** How many deliveries threw a `TransactionViolation` and were retried. */
  retries: number;
}

export interface DeliveryOptions {
  /** Deliver each wave of events in parallel (exercises lock contention), default false. */
  concurrent?: boolean;
  /** Attempts per event when the handler throws a `TransactionViolation`, default 50. */
  maxAttempts?: number;
  /** Safety limit on total deliveries, default 1000. */
  maxDeliveries?: number;
}

function isTransactionViolation(error: unknown): boolean {
  return error instanceof Error && error.name === 'ViolationError<OrchestratorTransaction>';
}

/** Delivers `initial` and everything it causes until no handler has work left. */
export async function deliverAll(
  handlers: FixtureHandler[],
  initial: ArvoEvent[],
  options: DeliveryOptions = {},
): Promise<DeliveryResult> {
  const bySource = new Map(handlers.map((handler) => [handler.source, handler]));
  const maxAttempts = options.maxAttempts ?? 50;
  const maxDeliveries = options.maxDeliveries ?? 1000;
  const result: DeliveryResult = { outbox: [], delivered: [], retries: 0 };

  async function deliver(event: ArvoEvent): Promise<ArvoEvent[]> {
    const handler = bySource.get(event.to ?? '');
    if (!handler) {
      result.outbox.push(event);
      return [];
    }
    for (let attempt = 1; ; attempt++) {
      if (result.delivered.length >= maxDeliveries) throw new Error(`more than ${maxDeliveries} deliveries`);
      result.delivered.push(event);
      try {
        return await handler.execute(event, { inheritFrom: 'EVENT' });
      } catch (error) {
        if (!isTransactionViolation(error) || attempt >= maxAttempts) throw error;
        result.retries += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.min(5 * attempt, 50)));
      }
    }
  }

  let queue = [...initial];
  while (queue.length > 0) {
    if (options.concurrent) {
      queue = (await Promise.all(queue.map(deliver))).flat();
    } else {
      const [next, ...rest] = queue;
      queue = [...rest, ...(await deliver(next!))];
    }
  }
  return result;
}
