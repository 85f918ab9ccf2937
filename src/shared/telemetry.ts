import {
  type Attributes,
  type Context,
  context,
  createContextKey,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { type Logger, writeLog } from './logger';
import { redactError, redactSecrets, redactValue } from './redact';

/** Name under which all spans of this library are created. */
const TRACER_NAME = 'arvo-postgres';

/**
 * Runs `fn` inside an active span named `name` when `enabled`, as a child of `parent` (default: the
 * active context), with redacted attributes, recording a redacted exception and an error status when
 * it throws. With `enabled` false it only calls `fn` (in `parent` when given): no OpenTelemetry cost.
 */
export async function withSpan<T>(
  enabled: boolean,
  name: string,
  attributes: Attributes,
  fn: (span?: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
  parent?: Context,
): Promise<T> {
  const base = parent ?? context.active();
  if (!enabled) return parent ? context.with(base, () => fn()) : fn();
  // Without a tracer provider the span is a no-op that never reads its attributes: skip redacting them.
  const options = tracerProviderRegistered() ? { kind, attributes: redactValue(attributes) } : { kind };
  return trace.getTracer(TRACER_NAME).startActiveSpan(name, options, base, async (span) => {
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

/**
 * Whether spans of this library go to a tracer provider (an OpenTelemetry SDK): asked per span, as one
 * may be registered at any time. A global provider of another copy of the API counts as registered.
 */
function tracerProviderRegistered(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer(TRACER_NAME) !== undefined;
}

/**
 * Runs one public operation of this library: in a span named `name` when `enabled` (see
 * {@link withSpan}), rethrowing whatever it throws with credentials redacted.
 */
export async function runOperation<T>(
  enabled: boolean,
  name: string,
  attributes: Attributes,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await withSpan(enabled, name, attributes, fn);
  } catch (error) {
    throw redactError(error);
  }
}

const PROBE = createContextKey('arvo-postgres context manager probe');

/**
 * Whether an OpenTelemetry context manager is registered: only then does `context.with` make a
 * context active (the API's default manager keeps the root context whatever is passed).
 */
export function contextManagerRegistered(): boolean {
  return context.with(ROOT_CONTEXT.setValue(PROBE, true), () => context.active().getValue(PROBE) === true);
}

let warnedNoContextManager = false;

/**
 * Warns once per process when no context manager is registered: arvo then finds no active span and
 * prints each of its span logs to the console as a JSON block, several per event.
 */
export function warnIfNoContextManager(logger: Logger): void {
  if (warnedNoContextManager || contextManagerRegistered()) return;
  warnedNoContextManager = true;
  writeLog(
    logger,
    'warn',
    'arvo-postgres: no OpenTelemetry context manager is registered, so arvo prints its span logs to the ' +
      'console (several JSON blocks per event). Register one before starting the broker: ' +
      "context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()) with 'context' from " +
      '@opentelemetry/api and AsyncLocalStorageContextManager from @opentelemetry/context-async-hooks, or ' +
      'start the OpenTelemetry Node SDK, which registers one.',
  );
}
