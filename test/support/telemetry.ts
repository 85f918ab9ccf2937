import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

let asyncContext = false;

/**
 * Registers an async-hooks context manager, once per process (OpenTelemetry refuses a second one):
 * with it spans nest across `await`, and arvo keeps its spans to OpenTelemetry instead of printing them.
 */
export function useAsyncContext(): void {
  if (asyncContext) return;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  asyncContext = true;
}

/**
 * Records every finished span of this process in memory: registers the async context, the W3C trace
 * context propagator and a global tracer provider exporting to the returned exporter. Call it at the
 * top of a test file, before the code under test takes its tracer.
 */
export function recordSpans(): InMemorySpanExporter {
  useAsyncContext();
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
  return exporter;
}
