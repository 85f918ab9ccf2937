/**
 * An operator script: queue counts and waiting dead letters, without a running broker.
 * `DATABASE_URL=postgres://… node operator.js [--replay]` (--replay sends every dead letter back to its queue)
 */
import { DeadLetters, queryQueueStats } from 'arvo-postgres';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL!, max: 2 });
try {
  for (const queue of await queryQueueStats(pool, 'pgboss', [], true)) {
    if (queue.name.startsWith('__pgboss__')) continue;
    console.log(
      `${queue.name}: ${queue.queued} queued, ${queue.active} active, ${queue.completed} completed, ` +
        `${queue.deadLettered} dead-lettered`,
    );
  }
  const deadLetters = new DeadLetters({ pool });
  for (const letter of await deadLetters.list({ limit: 20 })) {
    console.log(`dead letter ${letter.id} from ${letter.sourceQueue}: ${letter.error?.message ?? '-'}`);
  }
  if (process.argv.includes('--replay')) {
    const replayed = await deadLetters.replay({ all: true });
    console.log(`replayed ${replayed.length} dead letters`);
  }
} finally {
  await pool.end();
}
