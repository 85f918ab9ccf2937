/**
 * A worker process for the crash test: serves the reliability workflow on `BROKER_DATABASE_URL`
 * with short job expiry and lock TTL (so work of a killed worker comes back within seconds) and
 * prints `ready`. It is killed with SIGKILL; it never stops gracefully.
 */
import { startWorkflowWorker } from './fixture';

const url = process.env.BROKER_DATABASE_URL;
if (!url) throw new Error('BROKER_DATABASE_URL is not set');

await startWorkflowWorker(url, {
  lockTtlMs: 3000,
  broker: {
    maintenanceIntervalSeconds: 1,
    pgBossPoolMax: 4,
    max: 6,
    defaults: { worker: { expireInSeconds: 3, retryLimit: 50, retryDelay: 0, retryBackoff: false } },
  },
});
process.stdout.write('ready\n');
