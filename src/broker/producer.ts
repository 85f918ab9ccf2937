import { SpanKind } from '@opentelemetry/api';
import { withSpan } from '../shared/telemetry';
import { dispatchBatchOption, dispatchOptions } from './arguments';
import type { CircuitBreaker } from './circuit-breaker';
import type { Delivery } from './delivery';
import { InternalQueueError, InvalidBatchEventError, UnroutableEventError } from './errors';
import { encodeEvent, eventDestination, jobIdForEvent, type StoredEvent } from './event-codec';
import { JobTransaction } from './job-transaction';
import type { PreparingDb } from './pgboss';
import type { Destination, Queues } from './queues';
import { contextFromTraceHeaders, messagingAttributes, traceHeadersOf } from './tracing';
import type { BrokerRuntime } from './types';

/** `dispatch` and `dispatchMany`: events checked at the boundary (`encodeEvent`), enqueued on the queue of their `to`. */
export class Producer {
  readonly #runtime: BrokerRuntime;
  readonly #queues: Queues;
  /** Bounds `dispatch` while PostgreSQL is down: fails fast instead of hanging. */
  readonly #breaker: CircuitBreaker;

  constructor(runtime: BrokerRuntime, queues: Queues, breaker: CircuitBreaker) {
    this.#runtime = runtime;
    this.#queues = queues;
    this.#breaker = breaker;
  }

  /** `dispatch(event, options)`: checks both, then routes and enqueues the event; returns the job id. */
  dispatch(event: unknown, options: unknown): Promise<string> {
    const delivery = dispatchOptions(options);
    return this.enqueue(encodeEvent(event, this.#runtime.options.maxPayloadBytes).stored, delivery);
  }

  /** Routes and enqueues `stored` (its job starting and ranked by `delivery`); returns the job id. */
  enqueue(stored: StoredEvent, delivery: Delivery = {}): Promise<string> {
    // One guarded call: routing may ask the database too, and its success must not reset the count.
    return this.#breaker.run('dispatch', async () => {
      const [routed] = await this.#routeAll([stored]);
      const parent = contextFromTraceHeaders(stored.traceparent, stored.tracestate);
      await this.#send(routed!.queue, [stored], delivery, parent);
      return jobIdForEvent(stored.id);
    });
  }

  /**
   * `dispatchMany(events, options)`: checks every event first, then routes them all (one invalid,
   * unroutable or internal destination refuses the whole batch with {@link InvalidBatchEventError}
   * naming its index), then inserts them with one statement per destination queue in one
   * transaction. Returns the job ids in the order of `events`.
   */
  dispatchMany(events: unknown, options: unknown): Promise<string[]> {
    const delivery = dispatchOptions(options);
    const stored = dispatchBatchOption(events).map((event, index) => {
      try {
        return encodeEvent(event, this.#runtime.options.maxPayloadBytes).stored;
      } catch (error) {
        throw new InvalidBatchEventError(index, error);
      }
    });
    return this.#breaker.run('dispatch', async () => {
      const byQueue = new Map<string, StoredEvent[]>();
      for (const { queue, stored: event } of await this.#routeAll(stored)) {
        byQueue.set(queue, [...(byQueue.get(queue) ?? []), event]);
      }
      const transaction = new JobTransaction(this.#runtime.pool, this.#runtime.databaseId);
      try {
        for (const [queue, batch] of byQueue) {
          await this.#send(queue, batch, delivery, undefined, transaction);
        }
        await transaction.commit();
      } catch (error) {
        await transaction.rollback();
        throw error;
      }
      return stored.map((event) => jobIdForEvent(event.id));
    });
  }

  /** Throws what `dispatch` would throw for `stored`'s destination (no queue, or an internal one). */
  async assertRoutable(stored: StoredEvent): Promise<void> {
    await this.#routeAll([stored]);
  }

  /** The destination of each event; throws for the first that has no queue or names an internal one. */
  async #routeAll(stored: StoredEvent[]): Promise<Array<{ stored: StoredEvent } & Destination>> {
    const routed = await this.#queues.route(
      stored.map((event) => ({ stored: event })),
      this.#runtime.pool,
    );
    routed.forEach((entry, index) => {
      const to = eventDestination(entry.stored);
      const refusal = entry.internal
        ? new InternalQueueError(entry.stored.id, to!)
        : entry.unroutable
          ? new UnroutableEventError(entry.stored.id, to)
          : undefined;
      if (refusal) throw stored.length === 1 ? refusal : new InvalidBatchEventError(index, refusal);
    });
    return routed;
  }

  /** Inserts `events` into `queue` in one statement under a producer span (through `db` when given). */
  async #send(
    queue: string,
    events: StoredEvent[],
    delivery: Delivery,
    parent: ReturnType<typeof contextFromTraceHeaders>,
    db?: PreparingDb,
  ): Promise<void> {
    const first = events[0]!;
    await withSpan(
      this.#runtime.options.telemetry,
      `${queue} send`,
      {
        ...messagingAttributes('send', queue, jobIdForEvent(first.id), first),
        ...(events.length > 1 ? { 'messaging.batch.message_count': events.length } : {}),
      },
      async (span) => {
        // An event without trace headers continues the producer span's trace from here on.
        const sent = events.map((event) =>
          !event.traceparent && span ? { ...event, ...traceHeadersOf(span) } : event,
        );
        const jobs = sent.map((event) => this.#queues.jobInsert(event, queue, delivery));
        await this.#runtime.boss.insert(queue, jobs, db);
      },
      SpanKind.PRODUCER,
      parent,
    );
  }
}
