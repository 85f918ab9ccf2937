/**
 * A worker process for the shutdown test: a broker serving `com.shutdown.slow`, on the database in
 * `BROKER_DATABASE_URL`, with `stopOnSignals({ timeoutMs: 2000 })`. Its handler prints `started` and
 * then runs far longer than that deadline (it ignores every abort). Prints `ready` once started.
 */
import { PostgresEventBroker } from '../../src/broker/index';
import { silentLogger } from '../../src/shared/logger';

const url = process.env.BROKER_DATABASE_URL;
if (!url) throw new Error('BROKER_DATABASE_URL is not set');

const broker = new PostgresEventBroker({ connectionString: url, logger: silentLogger });
await broker.register({
  source: 'com.shutdown.slow',
  async execute() {
    process.stdout.write('started\n');
    await new Promise((resolve) => setTimeout(resolve, 120_000));
    return [];
  },
});
await broker.start();
broker.stopOnSignals({ timeoutMs: 2000 });
process.stdout.write('ready\n');
