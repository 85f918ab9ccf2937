import { queryQueueStats } from '../../broker/stats';
import { defineCommand, EXIT, formatAge, JSON_OPTION, parseDuration, unknownQueues } from '../common';

export const healthCommand = defineCommand({
  name: 'health',
  summary: 'exit 0 when the database answers, pg-boss is installed and the given queues keep up (probes)',
  usage: `Usage: arvo-postgres health [--queue q]... [--max-wait 5m] [--json]

For a probe (a Kubernetes exec probe, cron, a deploy step): checks that the database answers and that
pg-boss is installed in --pgboss-schema; with --queue, also that the queue exists and none of its due jobs
has waited longer than --max-wait (a consumer is keeping up). A broker process reports its own health
with broker.health().

Exit codes: 0 healthy; 1 unhealthy (each problem printed); 2 usage.

  --queue <name>      a queue that must be consumed (repeatable)
  --max-wait <dur>    longest wait of a due job of those queues (default 5m; ms, s, m, h, d, w)
  --json              print { ok, problems } as JSON`,
  options: {
    queue: { type: 'string', multiple: true },
    'max-wait': { type: 'string', default: '5m' },
    ...JSON_OPTION,
  },
  async run({ values, names, onPgBoss, report }) {
    const maxWaitMs = parseDuration(values['max-wait'], '--max-wait');
    const queues = values.queue ?? [];
    const problems = await onPgBoss(async (pool) => {
      const unknown = await unknownQueues(pool, names.pgBossSchema, queues);
      const found: string[] = unknown.map(({ queue, hint }) => `no queue ${JSON.stringify(queue)}${hint}`);
      const present = queues.filter((queue) => !unknown.some((missing) => missing.queue === queue));
      for (const stats of await queryQueueStats(pool, names.pgBossSchema, present, false)) {
        if (stats.oldestQueuedAgeMs !== null && stats.oldestQueuedAgeMs > maxWaitMs) {
          found.push(
            `${stats.name}: a due job has waited ${formatAge(stats.oldestQueuedAgeMs)}, more than --max-wait ${values['max-wait']} (${stats.queued} waiting): is a consumer running?`,
          );
        }
      }
      return found;
    });
    const ok = problems.length === 0;
    report({ ok, problems }, () =>
      ok ? 'healthy\n' : `${problems.map((p) => `unhealthy: ${p}`).join('\n')}\n`,
    );
    return ok ? EXIT.ok : EXIT.problem;
  },
});
