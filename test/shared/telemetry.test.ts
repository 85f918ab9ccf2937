import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { withSpan } from '../../src/shared/telemetry';
import { recordSpans, useAsyncContext } from '../support/telemetry';

const SECRET_URL = 'postgres://app:hunter2-secret@db:5432/app';
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

describe('withSpan', () => {
  it('without a tracer provider runs in a span that continues the parent trace', async () => {
    useAsyncContext();
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: TRACE_ID,
      spanId: 'b7ad6b7169203331',
      traceFlags: 1,
      isRemote: true,
    });
    const seen = await withSpan(
      true,
      'no.provider',
      { url: SECRET_URL },
      async (span) => {
        assert.ok(span);
        return trace.getActiveSpan()?.spanContext().traceId;
      },
      undefined,
      parent,
    );
    assert.equal(seen, TRACE_ID);
  });

  it('redacts the attributes of a tracer provider registered after spans ran without one', async () => {
    await withSpan(true, 'before', { url: SECRET_URL }, async () => {});
    const exporter = recordSpans();
    await withSpan(true, 'after', { url: SECRET_URL, 'messaging.system': 'pg-boss' }, async () => {});
    const spans = exporter.getFinishedSpans();
    assert.deepEqual(
      spans.map((span) => [span.name, span.attributes]),
      [['after', { url: 'postgres://app:[REDACTED]@db:5432/app', 'messaging.system': 'pg-boss' }]],
    );
  });
});
