/**
 * A worker process: runs the greeting service until SIGTERM (a container stop) or Ctrl-C, then
 * stops fetching, lets running handlers finish (up to 10 s) and exits.
 * `DATABASE_URL=postgres://… node worker.js`
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PostgresEventBroker } from 'arvo-postgres';
import { greetingService } from './greeting.js';

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const broker = new PostgresEventBroker({ connectionString: process.env.DATABASE_URL! });
await broker.register(greetingService);
await broker.start();
console.log(`worker ready: ${broker.queues.join(', ')}`);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  try {
    await broker.stop({ timeoutMs: 10_000 });
    console.log('worker stopped');
  } catch (error) {
    console.error('worker stop failed', error);
    process.exitCode = 1;
  }
}
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
