/**
 * A service app: hosts the greeting service and calls it through the durable broker.
 * `DATABASE_URL=postgres://… node service-app.js [name]`
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { createArvoEventFactory } from 'arvo-core';
import { PostgresEventBroker } from 'arvo-postgres';
import { greetingContract, greetingService } from './greeting.js';

// Without a context manager arvo prints its span logs to the console.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const broker = new PostgresEventBroker({ connectionString: process.env.DATABASE_URL! });
await broker.register(greetingService);
await broker.start();
try {
  const request = createArvoEventFactory(greetingContract.version('1.0.0')).accepts({
    source: 'com.example.app',
    subject: `greeting-${Date.now()}`,
    data: { name: process.argv[2] ?? 'world' },
  });
  // resolve(): dispatch, then wait for the reply addressed back to `source`.
  const reply = await broker.resolve(request, { timeoutMs: 30_000 });
  console.log(reply.data.message);
} finally {
  await broker.stop({ timeoutMs: 10_000 });
}
