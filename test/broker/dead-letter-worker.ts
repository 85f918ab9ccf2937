/**
 * A worker process for the dead-letter alert test: serves `com.alert.crash` on `BROKER_DATABASE_URL`
 * with no retry and a 2 s claim, prints `ready`, then `handling` once a job's handler runs, which
 * never returns: the test kills the process with SIGKILL, and pg-boss dead-letters the job when its
 * claim expires.
 */
import { PostgresEventBroker } from '../../src/broker/index';
import { silentLogger } from '../../src/shared/logger';

const url = process.env.BROKER_DATABASE_URL;
if (!url) throw new Error('BROKER_DATABASE_URL is not set');

const broker = new PostgresEventBroker({ connectionString: url, logger: silentLogger });
await broker.register(
  {
    source: 'com.alert.crash',
    async execute() {
      process.stdout.write('handling\n');
      return new Promise<never>(() => {});
    },
  },
  { worker: { retryLimit: 0, expireInSeconds: 2 } },
);
await broker.start();
process.stdout.write('ready\n');
