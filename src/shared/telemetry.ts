import { type Attributes, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { redactSecrets } from './redact';

/** Name under which all spans of this library are created. */
export const TRACER_NAME = 'arvo-postgres';

/**
 * Runs `fn` inside an active span named `name` when `enabled`, recording a redacted exception and
 * an error status when it throws. With `enabled` false it only calls `fn`: no OpenTelemetry cost.
 */
export async function withSpan<T>(
  enabled: boolean,
  name: string,
  attributes: Attributes,
  fn: (span?: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  if (!enabled) return fn();
  return trace.getTracer(TRACER_NAME).startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      const message = redactSecrets(error instanceof Error ? error.message : String(error));
      span.recordException({ name: error instanceof Error ? error.name : 'Error', message });
      span.setStatus({ code: SpanStatusCode.ERROR, message });
      throw error;
    } finally {
      span.end();
    }
  });
}
