import { listSchedules, type ScheduleInfo } from '../../broker/schedules';
import {
  type CliIo,
  CONNECTION_HELP,
  type Command,
  EXIT,
  JSON_OPTION,
  json,
  onPgBossDatabase,
  parseCommand,
  table,
  UsageError,
} from '../common';

function render(schedules: ScheduleInfo[]): string {
  if (schedules.length === 0) return 'no schedules\n';
  return table(
    ['NAME', 'CRON', 'TZ', 'NEXT RUN', 'SENDS'],
    schedules.map((schedule) => [
      schedule.name,
      schedule.cron,
      schedule.tz,
      schedule.nextRunAt?.toISOString() ?? '-',
      schedule.event
        ? `${schedule.event.type} to ${schedule.event.to}`
        : 'factory (processes that registered it)',
    ]),
  );
}

export const schedulesCommand: Command = {
  name: 'schedules',
  summary: 'list the scheduled events (broker.schedule)',
  usage: `Usage: arvo-postgres schedules list [--json]

The schedules of broker.schedule() in the database, by name: cron expression, time zone, next run
(after now, this machine's clock) and what each tick sends: a template's event type and
destination (never its data), or a factory, whose events only the processes that registered it send.

  --json  print JSON (the ScheduleInfo fields of broker.getSchedules())

Exit codes: 0 done; 1 pg-boss is not installed in the schema, or the database failed; 2 usage.

${CONNECTION_HELP}`,
  async run(args: string[], io: CliIo): Promise<number> {
    const parsed = parseCommand(this, args, { ...JSON_OPTION }, io, { positionals: true });
    if (!parsed) return EXIT.ok;
    const { values, positionals, names } = parsed;
    if (positionals[0] !== 'list' || positionals.length > 1) {
      throw new UsageError('expected the subcommand list');
    }
    return onPgBossDatabase(values, io, names.pgBossSchema, async (pool) => {
      const schedules = await listSchedules(pool, names.pgBossSchema);
      io.stdout(values.json ? json(schedules) : render(schedules));
      return EXIT.ok;
    });
  },
};
