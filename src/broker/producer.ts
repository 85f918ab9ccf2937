import { SpanKind } from '@opentelemetry/api';
import { withSpan } from '../shared/telemetry';
import type { CircuitBreaker } from './circuit-breaker';
import { InternalQueueError, UnroutableEventError } from './errors';
import { eventDestination, jobIdForEvent, type StoredEvent } from './event-codec';
import { jobInsertFor, type Queues } from './queues';
import { contextFromTraceHeaders, messagingAttributes, traceHeadersOf } from './tracing';
import type { BrokerRuntime } from './types';

/** Enqueues dispatched events (already encoded and checked: see `encodeEvent`) on the queue of their `to`. */
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

  /** Routes and enqueues `stored`; returns the job id. */
  dispatch(stored: StoredEvent): Promise<string> {
    // One guarded call: routing may ask the database too, and its success must not reset the count.
    return this.#breaker.run('dispatch', () => this.#send(stored));
  }

  async #send(stored: StoredEvent): Promise<string> {
    const [routed] = await this.#queues.route([{ stored }], this.#runtime.pool);
    const to = eventDestination(stored);
    if (routed?.internal) throw new InternalQueueError(stored.id, to!);
    if (!routed || routed.unroutable) throw new UnroutableEventError(stored.id, to);
    const jobId = jobIdForEvent(stored.id);
    const parent = contextFromTraceHeaders(stored.traceparent, stored.tracestate);
    await withSpan(
      this.#runtime.options.telemetry,
      `${routed.queue} send`,
      messagingAttributes('send', routed.queue, jobId, stored),
      async (span) => {
        const sent = { ...stored };
        // An event without trace headers continues the producer span's trace from here on.
        if (!sent.traceparent && span) Object.assign(sent, traceHeadersOf(span));
        await this.#runtime.boss.insert(routed.queue, [jobInsertFor(sent, true)]);
      },
      SpanKind.PRODUCER,
      parent,
    );
    return jobId;
  }
}
