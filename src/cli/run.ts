import { version } from '../../package.json';
import { InvalidOptionError } from '../shared/errors';
import { describeError } from '../shared/redact';
import { dashboardCommand } from './commands/dashboard';
import { dlqCommand } from './commands/dlq';
import { doctorCommand } from './commands/doctor';
import { healthCommand } from './commands/health';
import { migrateCommand } from './commands/migrate';
import { queuesCommand } from './commands/queues';
import { schedulesCommand } from './commands/schedules';
import { statsCommand } from './commands/stats';
import { workflowsCommand } from './commands/workflows';
import { type CliIo, type Command, didYouMean, EXIT, UsageError } from './common';
import { printableIo } from './output';

const COMMANDS: Command[] = [
  statsCommand,
  queuesCommand,
  schedulesCommand,
  dlqCommand,
  workflowsCommand,
  migrateCommand,
  doctorCommand,
  healthCommand,
  dashboardCommand,
];

const HELP = `Usage: arvo-postgres <command> [options]

Operations on an arvo-postgres database (the connection comes from --url or DATABASE_URL).

Commands:
${COMMANDS.map((command) => `  ${command.name.padEnd(10)} ${command.summary}`).join('\n')}

Run arvo-postgres <command> --help for a command's options; arvo-postgres --version prints the version.

Exit codes: 0 ok; 1 a problem was found or the operation failed; 2 usage error.
`;

/**
 * Runs one command line and returns its exit code. Everything it prints goes through `printable`:
 * credentials (a password in --url, DATABASE_URL or event data) are redacted and control characters
 * from subjects or error messages are escaped.
 */
export async function runCli(argv: string[], rawIo: CliIo): Promise<number> {
  const io = printableIo(rawIo);
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    io.stdout(`${version}\n`);
    return EXIT.ok;
  }
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (!command) {
    const names = COMMANDS.map((candidate) => candidate.name);
    io.stderr(`arvo-postgres: unknown command ${JSON.stringify(name)}${didYouMean(name, names)}\n\n${HELP}`);
    return EXIT.usage;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    const message = describeError(error).message;
    if (error instanceof UsageError || error instanceof InvalidOptionError) {
      io.stderr(
        `arvo-postgres ${command.name}: ${message}\nRun arvo-postgres ${command.name} --help for usage.\n`,
      );
      return EXIT.usage;
    }
    io.stderr(`arvo-postgres ${command.name}: ${message}\n`);
    return EXIT.problem;
  }
}
