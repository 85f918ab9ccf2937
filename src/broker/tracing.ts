import {
  type Attributes,
  type Context,
  createTraceState,
  ROOT_CONTEXT,
  type Span,
  trace,
} from '@opentelemetry/api';

/**
 * W3C trace-context handling for events crossing a queue. Arvo events carry `traceparent` and
 * `tracestate`; the consumer continues that trace (instead of whatever context happens to be active
 * in the worker loop), and the handler is run with `inheritFrom: 'CONTEXT'` so that arvo's own spans
 * and the emitted events stay in it. Parsing follows the W3C Trace Context spec (version 00, hex
 * trace flags), which is all `W3CTraceContextPropagator` does for extraction; doing it here keeps
 * `@opentelemetry/core` out of the runtime dependencies.
 */

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})(-.*)?$/;
const INVALID_TRACE_ID = '0'.repeat(32);
const INVALID_SPAN_ID = '0'.repeat(16);

/** The remote parent context described by an event's trace headers, or `undefined` when absent/invalid. */
export function contextFromTraceHeaders(traceparent: unknown, tracestate: unknown): Context | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const match = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match;
  if (
    version === 'ff' ||
    (version === '00' && rest) ||
    traceId === INVALID_TRACE_ID ||
    spanId === INVALID_SPAN_ID
  ) {
    return undefined;
  }
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: Number.parseInt(flags!, 16),
    isRemote: true,
    ...(typeof tracestate === 'string' && tracestate.length > 0
      ? { traceState: createTraceState(tracestate) }
      : {}),
  });
}

/** `traceparent`/`tracestate` of `span`, for an event that had none. */
export function traceHeadersOf(span: Span): { traceparent: string; tracestate: string | null } | undefined {
  const spanContext = span.spanContext();
  if (!trace.isSpanContextValid(spanContext)) return undefined;
  const flags = spanContext.traceFlags.toString(16).padStart(2, '0');
  return {
    traceparent: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`,
    tracestate: spanContext.traceState?.serialize() || null,
  };
}

/** Messaging attributes shared by producer and consumer spans (OpenTelemetry messaging conventions). */
export function messagingAttributes(
  operation: 'send' | 'process',
  queue: string,
  jobId: string,
  event: { id: string; type: string },
): Attributes {
  return {
    'messaging.system': 'pg-boss',
    'db.system.name': 'postgresql',
    'messaging.operation.type': operation,
    'messaging.destination.name': queue,
    'messaging.message.id': jobId,
    'cloudevents.event_id': event.id,
    'cloudevents.event_type': event.type,
  };
}
