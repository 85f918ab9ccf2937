import { DEFAULT_INTERNAL_QUEUES } from '../../broker/options';
import { deleteQueue, setQueuePaused } from '../../broker/queue-control';
import { defineCommand, EXIT, UsageError } from '../common';

export const queuesCommand = defineCommand({
  name: 'queues',
  summary: 'pause, resume or delete a queue',
  usage: `Usage:
  arvo-postgres queues pause <queue>
  arvo-postgres queues resume <queue>
  arvo-postgres queues delete <queue> [--force]

  pause    every broker stops fetching the queue's jobs within a second (jobs being handled finish);
           dispatch keeps accepting events for it. Shown as PAUSED by \`arvo-postgres stats\`.
  resume   every broker fetches it again within a second
  delete   delete the queue and its jobs. Refused for an internal queue (a dead-letter queue,
           ${DEFAULT_INTERNAL_QUEUES.join(', ')}, pg-boss's own) and while jobs wait or run in it,
           unless --force (which deletes them with the queue). Stop the handlers serving it first.

  --force  delete: also when jobs wait or run in the queue

Exit codes: 0 done; 1 refused, no such queue, or the database failed; 2 usage.`,
  options: { force: { type: 'boolean', default: false } },
  positionals: true,
  async run({ values, positionals, names, onPgBoss }, io) {
    const [action, queue, ...rest] = positionals;
    if (!action || !['pause', 'resume', 'delete'].includes(action)) {
      throw new UsageError('expected a subcommand: pause, resume or delete');
    }
    if (!queue || rest.length > 0) throw new UsageError(`queues ${action} takes exactly one queue name`);
    if (values.force && action !== 'delete') throw new UsageError('--force applies to queues delete only');
    const schema = names.pgBossSchema;
    return onPgBoss(async (pool) => {
      if (action === 'delete') {
        const deleted = await deleteQueue(pool, schema, queue, {
          force: values.force,
          internal: DEFAULT_INTERNAL_QUEUES,
        });
        io.stdout(`deleted queue ${queue}${deleted > 0 ? ` and ${deleted} waiting job(s)` : ''}\n`);
      } else {
        await setQueuePaused(pool, schema, queue, action === 'pause');
        io.stdout(`${action === 'pause' ? 'paused' : 'resumed'} queue ${queue}\n`);
      }
      return EXIT.ok;
    });
  },
});
