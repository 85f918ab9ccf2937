/**
 * A second process for the two-process test: a broker serving `com.remote.mul` only, on the database
 * in `BROKER_DATABASE_URL`. Prints `ready` once its queue exists; stops gracefully on SIGTERM.
 */
import { createArvoEvent } from 'arvo-core';
import { PostgresEventBroker } from '../../src/broker/index';
import { silentLogger } from '../../src/shared/logger';

const url = process.env.BROKER_DATABASE_URL;
if (!url) throw new Error('BROKER_DATABASE_URL is not set');

const broker = new PostgresEventBroker({ connectionString: url, logger: silentLogger });
await broker.register({
  source: 'com.remote.mul',
  async execute(event) {
    const input = event.data as { step?: number };
    return [
      createArvoEvent(
        {
          source: 'com.remote.mul',
          type: 'evt.com.remote.mul.success',
          subject: event.subject,
          to: event.redirectto ?? event.source,
          data: { pid: process.pid, step: input.step ?? null },
          ...(event.traceparent ? { traceparent: event.traceparent } : {}),
        },
        {},
        { disable: true },
      ),
    ];
  },
});
await broker.start();
process.stdout.write('ready\n');

process.on('SIGTERM', () => {
  broker.stop({ timeoutMs: 5000 }).then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
