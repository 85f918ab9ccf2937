import { InvalidOptionError } from '../shared/errors';
import { describeError, redactSecrets } from '../shared/redact';
import { dashboardCommand } from './commands/dashboard';
import { dlqCommand } from './commands/dlq';
import { doctorCommand } from './commands/doctor';
import { migrateCommand } from './commands/migrate';
import { statsCommand } from './commands/stats';
import { workflowsCommand } from './commands/workflows';
import { type CliIo, type Command, EXIT, UsageError } from './common';

const COMMANDS: Command[] = [
  statsCommand,
  dlqCommand,
  workflowsCommand,
  migrateCommand,
  doctorCommand,
  dashboardCommand,
];

const HELP = `Usage: arvo-postgres <command> [options]

Operations on an arvo-postgres database (the connection comes from --url or DATABASE_URL).

Commands:
${COMMANDS.map((command) => `  ${command.name.padEnd(10)} ${command.summary}`).join('\n')}

Run arvo-postgres <command> --help for a command's options.

Exit codes: 0 ok; 1 a problem was found or the operation failed; 2 usage error.
`;

/**
 * Runs one command line and returns its exit code. Every message that leaves it goes through the
 * redaction helpers: a password given in --url or DATABASE_URL is never printed.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (!command) {
    io.stderr(`arvo-postgres: unknown command ${JSON.stringify(redactSecrets(name))}\n\n${HELP}`);
    return EXIT.usage;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    const message = redactSecrets(describeError(error).message);
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
