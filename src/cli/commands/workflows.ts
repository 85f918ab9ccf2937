import { FINISHED_STATUSES } from '../../memory/sql';
import {
  type CliIo,
  CONNECTION_HELP,
  type Command,
  connectionStringOf,
  EXIT,
  formatAge,
  json,
  parseCommand,
  parseCount,
  parseDuration,
  table,
  withPool,
} from '../common';
import { stuckWorkflowsSql, tableExistsSql, workflowCountsSql } from '../sql';

export const workflowsCommand: Command = {
  name: 'workflows',
  summary: 'workflow counts by orchestrator and status; stuck workflows',
  usage: `Usage: arvo-postgres workflows [--stuck-older-than <duration>] [--limit n] [--json]

Counts of the machine memory's workflow records by orchestrator and status. With
--stuck-older-than, also lists the workflows that are not finished (status not one of
${FINISHED_STATUSES.join(', ')}, and no failure record) and were not written for longer than the duration (e.g. 1h).

  --stuck-older-than <d>  list unfinished workflows idle longer than d (30s, 15m, 1h, 7d)
  --limit <n>             at most n stuck workflows (default 100)
  --json                  print JSON

Exit codes: 0 done (and no stuck workflow); 1 stuck workflows found, or the table is missing; 2 usage.

${CONNECTION_HELP}`,
  async run(args: string[], io: CliIo): Promise<number> {
    const parsed = parseCommand(
      this,
      args,
      {
        'stuck-older-than': { type: 'string' },
        limit: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      io,
    );
    if (!parsed) return EXIT.ok;
    const { values, names } = parsed;

    const stuckAfter = values['stuck-older-than'];
    const stuckMs = stuckAfter === undefined ? null : parseDuration(stuckAfter, '--stuck-older-than');
    const limit = parseCount(values.limit, '--limit', 100);
    const url = connectionStringOf(values, io);
    return withPool(url, async (pool) => {
      const { rows: exists } = await pool.query(tableExistsSql, [names.schema, names.stateTable]);
      if (!exists[0]?.exists) {
        io.stderr(
          `table ${names.schema}.${names.stateTable} does not exist (create it with: arvo-postgres migrate)\n`,
        );
        return EXIT.problem;
      }
      const { rows: counts } = await pool.query(workflowCountsSql(names.schema, names.stateTable));
      const stuck =
        stuckMs === null
          ? null
          : (await pool.query(stuckWorkflowsSql(names.schema, names.stateTable), [stuckMs, limit])).rows;
      if (values.json) {
        io.stdout(
          json({
            counts: counts.map((row) => ({
              orchestrator: row.orchestrator,
              status: row.status,
              count: row.count,
              oldestUpdate: row.oldest_update,
            })),
            ...(stuck
              ? {
                  stuck: stuck.map((row) => ({
                    subject: row.subject,
                    orchestrator: row.orchestrator,
                    status: row.status,
                    updatedAt: row.updated_at,
                    idleMs: row.idle_ms,
                  })),
                }
              : {}),
          }),
        );
      } else {
        io.stdout(
          counts.length === 0
            ? 'no workflows\n'
            : table(
                ['ORCHESTRATOR', 'STATUS', 'COUNT', 'OLDEST UPDATE'],
                counts.map((row) => [
                  row.orchestrator,
                  row.status,
                  row.count,
                  row.oldest_update.toISOString(),
                ]),
              ),
        );
        if (stuck) {
          io.stdout(
            stuck.length === 0
              ? `\nno unfinished workflow idle longer than ${stuckAfter}\n`
              : `\n${stuck.length} unfinished workflow${stuck.length === 1 ? '' : 's'} idle longer than ${stuckAfter}:\n${table(
                  ['SUBJECT', 'ORCHESTRATOR', 'STATUS', 'IDLE'],
                  stuck.map((row) => [
                    row.subject,
                    row.orchestrator ?? '-',
                    row.status ?? '-',
                    formatAge(row.idle_ms),
                  ]),
                )}`,
          );
        }
      }
      return stuck && stuck.length > 0 ? EXIT.problem : EXIT.ok;
    });
  },
};
