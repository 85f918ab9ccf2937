import { type BrokerQueueStats, queryQueueStats } from '../../broker/stats';
import { defineCommand, EXIT, formatAge, JSON_OPTION, table, UsageError, unknownQueues } from '../common';

const DEFAULT_WATCH_SECONDS = 2;
/** Prefix of pg-boss's internal queues (e.g. `__pgboss__send-it`). */
const INTERNAL_PREFIX = '__pgboss__';

function render(stats: BrokerQueueStats[]): string {
  if (stats.length === 0) return 'no queues\n';
  return table(
    ['QUEUE', 'QUEUED', 'ACTIVE', 'DEFERRED', 'FAILED', 'COMPLETED', 'DEAD-LETTERED', 'OLDEST', 'PAUSED'],
    stats.map((queue) => [
      queue.name,
      queue.queued,
      queue.active,
      queue.deferred,
      queue.failed,
      queue.completed,
      queue.deadLettered,
      formatAge(queue.oldestQueuedAgeMs),
      queue.paused ? 'yes' : 'no',
    ]),
  );
}

/** `--watch` may be given without seconds: make the value explicit for parseArgs. */
function normalizeWatch(args: string[]): string[] {
  const out: string[] = [];
  for (const [index, arg] of args.entries()) {
    out.push(arg);
    const next = args[index + 1];
    if (arg === '--watch' && (next === undefined || !/^\d+(\.\d+)?$/.test(next))) {
      out.push(String(DEFAULT_WATCH_SECONDS));
    }
  }
  return out;
}

export const statsCommand = defineCommand({
  name: 'stats',
  summary: 'queued / active / failed / dead-lettered / oldest age per queue',
  usage: `Usage: arvo-postgres stats [--queue <name>]... [--json] [--watch [seconds]]

Exact counts per pg-boss queue, from the job table (the same query as broker.getStats()).
No running broker is needed. Columns: QUEUED waiting to run (incl. DEFERRED, whose start is in
the future), ACTIVE being handled, FAILED and COMPLETED rows still retained, DEAD-LETTERED copies
of this queue's jobs waiting in dead-letter queues, OLDEST age of the oldest job ready to run,
PAUSED yes while the queue is paused (\`arvo-postgres queues pause\`).

  --queue <name>     only this queue (repeatable); default: every queue except pg-boss's
                     internal __pgboss__* queues
  --json             print JSON (the BrokerQueueStats fields)
  --watch [seconds]  refresh every N seconds (default ${DEFAULT_WATCH_SECONDS}) until Ctrl-C: redrawn in
                     place on a terminal, appended otherwise (one JSON line per refresh with --json)

Exit codes: 0 done; 1 pg-boss is not installed in the schema, a --queue does not exist, or the
database failed; 2 usage.`,
  options: {
    queue: { type: 'string', multiple: true },
    ...JSON_OPTION,
    watch: { type: 'string' },
  },
  normalizeArgs: normalizeWatch,
  async run({ values, names, onPgBoss, report }, io) {
    const watchSeconds = values.watch === undefined ? null : Number(values.watch);
    if (watchSeconds !== null && !(watchSeconds > 0))
      throw new UsageError('--watch: expected a number of seconds > 0');
    const queues = values.queue ?? [];
    return onPgBoss(async (pool) => {
      if (queues.length > 0) {
        const unknown = await unknownQueues(pool, names.pgBossSchema, queues);
        if (unknown.length > 0) {
          for (const { queue, hint } of unknown) {
            io.stderr(
              `arvo-postgres stats: no queue ${JSON.stringify(queue)} in pg-boss schema ${JSON.stringify(names.pgBossSchema)}${hint}\n`,
            );
          }
          return EXIT.problem;
        }
      }
      const read = async () => {
        const stats = await queryQueueStats(pool, names.pgBossSchema, queues, queues.length === 0);
        // pg-boss's own internal queues only when asked for by name.
        return queues.length === 0 ? stats.filter((queue) => !queue.name.startsWith(INTERNAL_PREFIX)) : stats;
      };
      if (watchSeconds === null) {
        const stats = await read();
        report(stats, render);
        return EXIT.ok;
      }
      let stopped = false;
      void io.interrupted().then(() => {
        stopped = true;
      });
      while (!stopped) {
        const stats = await read();
        if (values.json) io.stdout(`${JSON.stringify({ at: new Date().toISOString(), queues: stats })}\n`);
        else {
          io.clearScreen?.();
          io.stdout(`${new Date().toISOString()}\n${render(stats)}\n`);
        }
        await Promise.race([
          new Promise((resolve) => setTimeout(resolve, watchSeconds * 1000).unref()),
          io.interrupted(),
        ]);
      }
      return EXIT.ok;
    });
  },
});
