/**
 * Redaction: after failure scenarios with a password in the connection string and `Authorization`
 * values in errors and event data, scan everything that leaves the library (thrown errors, captured
 * log lines, dead-letter rows, span attributes/events of an in-memory exporter): neither the
 * password nor the bearer token appears.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { PostgresEventBroker } from '../../src/broker/index';
import { createPostgresLock } from '../../src/lock/index';
import { connectPostgresMachineMemory } from '../../src/memory/index';
import { clientEvent, handler, memoryLogger, useTestDatabase, waitFor } from '../broker/support';
import { createTestRole } from '../support/database';
import { freePort } from '../support/postgres-server';
import { recordSpans } from '../support/telemetry';

const exporter = recordSpans();

const PASSWORD = `Pw-${randomBytes(8).toString('hex')}`;
const TOKEN = `tok.${randomBytes(12).toString('hex')}`;
const ROLE = `redact_${randomBytes(4).toString('hex')}`;

/** Everything about an error a caller could print: message, stack, own properties, causes. */
function errorText(error: unknown, depth = 0): string {
  if (!(error instanceof Error) || depth > 4) return inspect(error, { depth: 6 });
  const cause = (error as { cause?: unknown }).cause;
  return [
    String(error),
    error.stack ?? '',
    inspect(error, { depth: 6, showHidden: true }),
    JSON.stringify(error),
    cause === undefined ? '' : errorText(cause, depth + 1),
  ].join('\n');
}

describe('redaction: no password or Authorization value leaves the library', () => {
  const suite = useTestDatabase('sec_redaction');
  let secretUrl: string;

  before(async () => {
    secretUrl = await createTestRole(suite.db, { name: ROLE, password: PASSWORD });
    await suite.pool.query(`ALTER DATABASE ${suite.db.name} OWNER TO ${ROLE}`);
  });

  it('fails in many ways and leaks the secrets nowhere', async (t) => {
    const logger = memoryLogger();
    const thrown: unknown[] = [];
    async function capture(fn: () => Promise<unknown>): Promise<void> {
      try {
        await fn();
      } catch (error) {
        thrown.push(error);
        return;
      }
      assert.fail('expected a failure');
    }
    const unreachable = new URL(secretUrl);
    unreachable.port = String(await freePort());
    // Unreachable database, password in the connection string, for each component.
    await capture(() =>
      new PostgresEventBroker({
        connectionString: unreachable.toString(),
        logger,
        connectionTimeoutMillis: 2000,
      }).start(),
    );
    await capture(() =>
      connectPostgresMachineMemory({ connectionString: unreachable.toString(), logger, enableOtel: true }),
    );
    await capture(() =>
      createPostgresLock({ connectionString: unreachable.toString(), logger, enableOtel: true }),
    );
    // Wrong password for a real role: the server refuses; the attempted password is masked too.
    const wrong = new URL(secretUrl);
    wrong.password = `${PASSWORD}-wrong`;
    await capture(() => connectPostgresMachineMemory({ connectionString: wrong.toString(), logger }));
    // Discrete settings instead of a URL.
    await capture(() =>
      new PostgresEventBroker({
        host: '127.0.0.1',
        port: Number(unreachable.port),
        user: ROLE,
        password: PASSWORD,
        database: suite.db.name,
        logger,
        connectionTimeoutMillis: 2000,
      }).start(),
    );

    // A working broker and memory as the role, whose handlers fail with secrets in their errors.
    const leaky = handler('com.sec.leaky', async (event) => {
      const data = event.data as { headers?: unknown };
      throw new Error(
        `upstream ${secretUrl} refused ${JSON.stringify(data.headers)} (Authorization: Bearer ${TOKEN})`,
      );
    });
    const broker = await suite.startBroker(
      t,
      {
        connectionString: secretUrl,
        logger,
        defaults: { worker: { retryLimit: 1, retryDelay: 1, retryBackoff: false } },
      },
      (b) => b.register(leaky),
    );
    const event = clientEvent('com.sec.leaky', { headers: { Authorization: `Bearer ${TOKEN}` } });
    await broker.dispatch(event);

    const memory = await connectPostgresMachineMemory({
      connectionString: secretUrl,
      logger,
      enableOtel: true,
    });
    try {
      await memory.write('subject-1', { n: 1 }, null);
      await capture(() => memory.write('subject-1', { n: 2 }, null));
    } finally {
      await memory.close();
    }

    const deadLetter = await waitFor(
      'the leaky event is dead-lettered',
      async () =>
        (
          await suite.pool.query(
            `SELECT id, name, state, output, source_name, source_output FROM pgboss.job WHERE name = 'arvo.dead-letter' AND source_id = $1`,
            [event.id],
          )
        ).rows[0],
      30_000,
    );
    const { rows: failedJobs } = await suite.pool.query(
      `SELECT output FROM pgboss.job WHERE name = 'com.sec.leaky'`,
    );
    // The failure records really carry the (masked) error, so the scan below looks at real content.
    assert.match(deadLetter.source_output.error.message, /upstream .*\[REDACTED\]/);

    // Scan every channel. Job `data` is the event as given and is stored as is (SECURITY.md:
    // do not put secrets into event data); everything the library writes about failures is scanned.
    const channels: Record<string, string> = {
      errors: thrown.map((error) => errorText(error)).join('\n'),
      logs: logger.lines.map((line) => inspect(line, { depth: 10 })).join('\n'),
      deadLetters: JSON.stringify(deadLetter),
      failedJobs: JSON.stringify(failedJobs),
      spans: JSON.stringify(
        exporter.getFinishedSpans().map((span) => ({
          name: span.name,
          attributes: span.attributes,
          events: span.events,
          status: span.status,
        })),
      ),
    };
    assert.equal(thrown.length, 6);
    assert.ok(logger.lines.length > 0, 'failures were logged');
    assert.ok(
      exporter.getFinishedSpans().some((span) => span.status.code === 2),
      'failed spans were recorded',
    );
    for (const [channel, text] of Object.entries(channels)) {
      assert.ok(!text.includes(PASSWORD), `the password leaked into ${channel}`);
      assert.ok(!text.includes(TOKEN), `the bearer token leaked into ${channel}`);
    }
  });
});
