import { type DeadLetter, DeadLetters } from '../../broker/dead-letters';
import { defineCommand, EXIT, JSON_OPTION, parseCount, parseDuration, table, UsageError } from '../common';
import { oneLine, shortTime } from '../output';

const USAGE = `Usage:
  arvo-postgres dlq list [--queue <source>] [--dlq <name>] [--limit n] [--json]
  arvo-postgres dlq show <id> [--json]
  arvo-postgres dlq replay (<id>... | --all) [--queue <source>] [--dlq <name>] [--limit n] [--dry-run] [--json]
  arvo-postgres dlq purge (<id>... | --older-than <duration>) [--queue <source>] [--dlq <name>] [--dry-run] [--json]

Dead letters of every dead-letter queue in the database (any queue named as some queue's dead letter
queue, and arvo.dead-letter).

  list     waiting dead letters, oldest first: id, source queue, attempts over all replays, first and
           last failure, the failure kind (error, contract, config, execution, …), the last (redacted) error
  show     one dead letter: the event, the last failure with its stack, and the failure history
  replay   move dead letters back to their source queue as new jobs (fresh retry budget). If an event
           fails again it returns to the dead-letter queue with every earlier failure in its history.
  purge    delete dead letters by id and/or age (--older-than 2w, 7d, 12h; --older-than 0s deletes all)

  --queue <source>   only dead letters that failed on this queue
  --dlq <name>       only this dead-letter queue
  --limit <n>        at most n (list: default 100, replay: default 1000)
  --dry-run          replay/purge: run the operation in a transaction that is rolled back, and print
                     what it would have replayed or purged
  --json             print JSON

Exit codes: 0 done; 1 an id was not found (nothing else is skipped) or the database failed; 2 usage.`;

function renderList(letters: DeadLetter[]): string {
  if (letters.length === 0) return 'no dead letters\n';
  return table(
    ['ID', 'SOURCE QUEUE', 'ATTEMPTS', 'FIRST FAILURE', 'LAST FAILURE', 'KIND', 'ERROR'],
    letters.map((letter) => [
      letter.id,
      letter.sourceQueue ?? '-',
      letter.totalAttempts ?? letter.attempts ?? '-',
      shortTime(letter.firstFailedAt),
      shortTime(letter.lastFailedAt ?? letter.deadLetteredAt),
      kindOf(letter),
      letter.error ? oneLine(`${letter.error.name}: ${letter.error.message}`, 80) : '-',
    ]),
  );
}

/** The failure kind the broker recorded (`error`, `contract`, …), `-` for a dead letter without a record. */
function kindOf(letter: DeadLetter): string {
  const kind = (letter.failure as { kind?: unknown } | null)?.kind;
  return typeof kind === 'string' ? kind : '-';
}

function renderOne(letter: DeadLetter): string {
  const failure = letter.failure as { error?: { stack?: string } } | null;
  const lines = [
    `id:              ${letter.id}`,
    `dead-letter queue: ${letter.deadLetterQueue}`,
    `source queue:    ${letter.sourceQueue ?? '-'}`,
    `source job:      ${letter.sourceJobId ?? '-'}`,
    `attempts:        ${letter.attempts ?? '-'} in the last round, ${letter.totalAttempts ?? '-'} in all`,
    `dead-lettered:   ${letter.deadLetteredAt.toISOString()}`,
    `kind:            ${kindOf(letter)}`,
    `error:           ${letter.error ? `${letter.error.name}: ${letter.error.message}` : '-'}`,
  ];
  if (failure?.error?.stack)
    lines.push('stack:', ...failure.error.stack.split('\n').map((line) => `  ${line}`));
  lines.push(`history (${letter.history.length} earlier failures):`);
  for (const entry of letter.history) {
    lines.push(
      `  ${entry.failedAt}  ${entry.queue} attempt ${entry.attempt}  ${entry.kind}  ${oneLine(`${entry.error.name}: ${entry.error.message}`, 100)}`,
    );
  }
  lines.push(
    'event:',
    ...JSON.stringify(letter.event, null, 2)
      .split('\n')
      .map((line) => `  ${line}`),
  );
  return `${lines.join('\n')}\n`;
}

export const dlqCommand = defineCommand({
  name: 'dlq',
  summary: 'list | show | replay | purge dead letters',
  usage: USAGE,
  options: {
    queue: { type: 'string' },
    dlq: { type: 'string' },
    limit: { type: 'string' },
    all: { type: 'boolean', default: false },
    'older-than': { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    ...JSON_OPTION,
  },
  positionals: true,
  async run({ values, positionals, names, onPgBoss, report }, io) {
    // PostgreSQL prints UUIDs in lower case; compare what it returns with the ids as it would print them.
    const [action, ...givenIds] = positionals;
    const ids = givenIds.map((id) => id.toLowerCase());
    if (!action) throw new UsageError('missing subcommand: list, show, replay or purge');
    const scope = {
      ...(values.queue ? { sourceQueue: values.queue } : {}),
      ...(values.dlq ? { queue: values.dlq } : {}),
    };
    const only = (allowed: string[]) => {
      const given = [
        ['--all', values.all],
        ['--older-than', values['older-than'] !== undefined],
        ['--limit', values.limit !== undefined],
        ['--queue', values.queue !== undefined],
        ['--dlq', values.dlq !== undefined],
        ['--dry-run', values['dry-run']],
      ] as const;
      for (const [flag, present] of given) {
        if (present && !allowed.includes(flag))
          throw new UsageError(`${flag} does not apply to dlq ${action}`);
      }
    };
    // --dry-run: the wording and JSON flag of what replay/purge report.
    const would = values['dry-run'] ? 'dry run, would have ' : '';
    const dryRun = values['dry-run'] ? { dryRun: true } : {};
    let operation: (letters: DeadLetters) => Promise<number>;
    switch (action) {
      case 'list': {
        only(['--limit', '--queue', '--dlq']);
        if (ids.length > 0) throw new UsageError('dlq list takes no ids (use dlq show <id>)');
        const limit = parseCount(values.limit, '--limit', 100);
        operation = async (letters) => {
          const listed = await letters.list({ ...scope, limit });
          report(listed, renderList);
          return EXIT.ok;
        };
        break;
      }
      case 'show': {
        only([]);
        if (ids.length !== 1) throw new UsageError('dlq show takes exactly one id');
        operation = async (letters) => {
          const letter = await letters.show(ids[0]!);
          if (!letter) {
            io.stderr(`no dead letter with id ${ids[0]}\n`);
            return EXIT.problem;
          }
          report(letter, renderOne);
          return EXIT.ok;
        };
        break;
      }
      case 'replay': {
        only(['--all', '--limit', '--queue', '--dlq', '--dry-run']);
        if (ids.length > 0 === values.all) throw new UsageError('dlq replay takes ids or --all (not both)');
        const limit = parseCount(values.limit, '--limit', 1000);
        operation = async (letters) => {
          const replayed = await letters.replay({
            ...scope,
            limit,
            ...(values.all ? { all: true } : { ids }),
          });
          const missing = ids.filter((id) => !replayed.some((entry) => entry.deadLetterId === id));
          report({ ...dryRun, replayed, missing }, () =>
            [
              `${would}replayed ${replayed.length} dead letter${replayed.length === 1 ? '' : 's'}\n`,
              ...replayed.map((entry) => `  ${entry.deadLetterId} -> ${entry.queue} (job ${entry.jobId})\n`),
            ].join(''),
          );
          if (missing.length > 0)
            io.stderr(`not replayed (no such waiting dead letter): ${missing.join(', ')}\n`);
          return missing.length > 0 ? EXIT.problem : EXIT.ok;
        };
        break;
      }
      case 'purge': {
        only(['--older-than', '--queue', '--dlq', '--dry-run']);
        const olderThan = values['older-than'];
        if (ids.length === 0 && olderThan === undefined) {
          throw new UsageError('dlq purge takes ids and/or --older-than <duration>');
        }
        const olderThanMs = olderThan === undefined ? undefined : parseDuration(olderThan, '--older-than');
        operation = async (letters) => {
          const purged = await letters.purge({
            ...scope,
            ...(ids.length > 0 ? { ids } : {}),
            ...(olderThanMs === undefined ? {} : { olderThanMs }),
          });
          const missing = ids.filter((id) => !purged.includes(id));
          report({ ...dryRun, purged, missing }, () =>
            [
              `${would}purged ${purged.length} dead letter${purged.length === 1 ? '' : 's'}\n`,
              ...(values['dry-run'] ? purged.map((id) => `  ${id}\n`) : []),
            ].join(''),
          );
          if (missing.length > 0)
            io.stderr(`not purged (no such waiting dead letter): ${missing.join(', ')}\n`);
          return missing.length > 0 ? EXIT.problem : EXIT.ok;
        };
        break;
      }
      default:
        throw new UsageError(
          `unknown dlq subcommand ${JSON.stringify(action)}: expected list, show, replay or purge`,
        );
    }
    return onPgBoss(async (pool) => {
      if (!values['dry-run']) return operation(new DeadLetters({ pool, schema: names.pgBossSchema }));
      // The real statement, rolled back: exactly what it would do, nothing changed.
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        return await operation(new DeadLetters({ pool: client, schema: names.pgBossSchema }));
      } finally {
        await client.query('ROLLBACK').catch(() => {});
        client.release();
      }
    });
  },
});
