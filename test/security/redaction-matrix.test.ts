/**
 * Redaction matrix: password shapes × ways of giving them × places they can leave the library. Each
 * way is a carrier text whose redacted form is known exactly; each place must hold the redacted form
 * byte for byte, with the innocent text around it (`workshop inventory`, `com.shop.orders`,
 * `arvo-postgres`) intact, and never the carrier as given. The secrets reach the places through a
 * real PostgreSQL: a handler's error (logs, failed-job output, dead-letter record, CLI), a trigger's
 * `RAISE` (thrown errors, spans), and event data (stored intact, redacted in CLI output).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { PostgresEventBroker } from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { clientEvent, handler, memoryLogger, useTestDatabase, waitFor } from '../broker/support';
import { runCliInProcess } from '../support/cli';
import { memoryForTest } from '../support/memory';
import { recordSpans } from '../support/telemetry';

const exporter = recordSpans();
const MASK = '[REDACTED]';
const QUEUE = 'com.shop.orders';

const SHAPES: Record<string, string> = {
  short: 'x9',
  numeric: '31415926',
  spaces: 'correct horse battery staple',
  quotes: `p&w'o"rd`,
  unicode: 'pässwörd-密码-🔑',
  postgres: 'postgres',
  shop: 'shop',
};

/** A way of giving a password: the text carrying it, and that text as redaction must leave it. */
type Way = (password: string) => { given: string; redacted: string };

const WAYS: Record<string, Way> = {
  'connection string': (pw) => ({
    given: `postgres://app:${encodeURIComponent(pw)}@arvo-postgres:5432/workshop`,
    redacted: `postgres://app:${MASK}@arvo-postgres:5432/workshop`,
  }),
  '?password=': (pw) => ({
    given: `postgresql://app@arvo-postgres:5432/workshop?password=${encodeURIComponent(pw)}&sslmode=disable`,
    redacted: `postgresql://app@arvo-postgres:5432/workshop?password=${MASK}&sslmode=disable`,
  }),
  'pool config': (pw) => {
    // A pool's configuration as Node prints it (a value with both quotes is printed in backticks).
    const given = inspect(
      { host: 'arvo-postgres', user: 'app', password: pw, database: 'workshop', max: 10 },
      { breakLength: Number.POSITIVE_INFINITY },
    );
    const quote = inspect(pw)[0];
    return { given, redacted: given.replace(inspect(pw), `${quote}${MASK}${quote}`) };
  },
  'libpq conninfo': (pw) => ({
    // Keyword/value form: a value in single quotes, `\\` and `\'` escaped.
    given: `host=arvo-postgres user=app password='${pw.replace(/[\\']/g, '\\$&')}' dbname=workshop`,
    redacted: `host=arvo-postgres user=app password='${MASK}' dbname=workshop`,
  }),
  'env-var text': (pw) => {
    const value = /^[\w-]+$/.test(pw) ? pw : `"${pw.replace(/[\\"$`]/g, '\\$&')}"`;
    const quote = value.startsWith('"') ? '"' : '';
    return { given: `PGPASSWORD=${value}`, redacted: `PGPASSWORD=${quote}${MASK}${quote}` };
  },
  JSON: (pw) => ({
    given: JSON.stringify({ user: 'app', password: pw, host: 'arvo-postgres' }),
    redacted: JSON.stringify({ user: 'app', password: MASK, host: 'arvo-postgres' }),
  }),
  'key=value text': (pw) => ({ given: `password=${pw}`, redacted: `password=${MASK}` }),
};

interface Case {
  name: string;
  password: string;
  given: string;
  redacted: string;
}

/** The message carrying a case: innocent text on both sides, the carrier at the end of its line. */
const message = (carrier: string) =>
  `workshop inventory for ${QUEUE} at arvo-postgres failed: ${carrier}\nnext: workshop inventory for ${QUEUE}`;

const CASES: Case[] = Object.entries(SHAPES).flatMap(([shape, password]) =>
  Object.entries(WAYS).map(([way, carry]) => ({ name: `${shape} × ${way}`, password, ...carry(password) })),
);

/** Asserts both ways for every case whose message must appear in `text` (`place`). */
function assertRedacted(place: string, text: string, cases: Case[], render = message): void {
  for (const c of cases) {
    const expected = render(c.redacted);
    assert.ok(text.includes(expected), `${place}, ${c.name}: expected ${JSON.stringify(expected)} in it`);
    assert.ok(!text.includes(render(c.given)) && !text.includes(c.given), `${place}, ${c.name}: leaked`);
  }
  // Passwords that are not also innocent words must be gone altogether.
  for (const password of Object.values(SHAPES)) {
    if (password.length >= 6 && !message('').includes(password)) {
      assert.ok(!text.includes(password), `${place}: ${JSON.stringify(password)} leaked`);
    }
  }
}

describe('redaction matrix: password shapes × ways of giving them × places', () => {
  const suite = useTestDatabase('sec_redaction_matrix');
  /** Every test's log lines: the memory's and the broker's. */
  const logger = memoryLogger();

  it('masks every case in thrown errors and spans, and keeps the text around it', async (t) => {
    const memory = await memoryForTest(t, { connectionString: suite.db.url, logger, enableOtel: true });
    // A real PostgreSQL error carrying the case's message in its message, detail and hint.
    await suite.pool.query(`
      CREATE FUNCTION raise_message() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION USING MESSAGE = NEW.data->>'raise', DETAIL = NEW.data->>'raise', HINT = NEW.data->>'raise';
      END $$;
      CREATE TRIGGER raise_message BEFORE INSERT ON arvo_workflow_state
        FOR EACH ROW WHEN (NEW.data ? 'raise') EXECUTE FUNCTION raise_message();`);
    const thrown: unknown[] = [];
    for (const [index, c] of CASES.entries()) {
      await assert.rejects(memory.write(`s-${index}`, { raise: message(c.given) }, null), (error) => {
        thrown.push(error);
        return true;
      });
    }
    const errors = thrown.map((error) => {
      const { message: text, stack, detail, hint } = error as Error & { detail: string; hint: string };
      return [text, stack, detail, hint, inspect(error)].join('\n');
    });
    for (const [index, c] of CASES.entries()) assertRedacted('thrown errors', errors[index]!, [c]);
    const spans = JSON.stringify(
      exporter
        .getFinishedSpans()
        .map((span) => ({ attributes: span.attributes, events: span.events, status: span.status })),
    );
    const oneLine = (carrier: string) => JSON.stringify(message(carrier)).slice(1, -1);
    assertRedacted('spans', spans, CASES, oneLine);
  });

  it('masks every case in logs, failed-job outputs, dead letters and CLI output; event data is stored intact', async (t) => {
    const failing = handler(QUEUE, async (event) => {
      const text = message((event.data as { carrier: string }).carrier);
      throw Object.assign(new Error(text), { code: (event.data as { carrier: string }).carrier });
    });
    const options = { logger, defaults: { worker: { retryLimit: 0 } } };
    const broker = await suite.startBroker(t, options, (b) => b.register(failing));
    for (const c of CASES)
      await broker.dispatch(clientEvent(QUEUE, { carrier: c.given, note: message(c.given) }));
    const deadLetters = await waitFor(
      'every case is dead-lettered',
      async () => {
        const { rows } = await suite.pool.query(
          `SELECT id, source_output FROM pgboss.job WHERE name = 'arvo.dead-letter'`,
        );
        return rows.length === CASES.length ? rows : undefined;
      },
      60_000,
    );
    const { rows: failedJobs } = await suite.pool.query(
      'SELECT data, output FROM pgboss.job WHERE name = $1',
      [QUEUE],
    );

    // The event data is the user's: stored as given, for replay.
    const storedData = JSON.stringify(failedJobs.map((job) => job.data));
    for (const c of CASES)
      assert.ok(storedData.includes(JSON.stringify(message(c.given)).slice(1, -1)), c.name);

    const asJson = (value: unknown) => JSON.stringify(value);
    const inJson = (carrier: string) => JSON.stringify(message(carrier)).slice(1, -1);
    assertRedacted('dead-letter records', asJson(deadLetters), CASES, inJson);
    assertRedacted('failed-job outputs', asJson(failedJobs.map((job) => job.output)), CASES, inJson);
    for (const c of CASES) {
      assert.ok(asJson(deadLetters).includes(`"code":${JSON.stringify(c.redacted)}`), `code of ${c.name}`);
    }
    assertRedacted('logs', JSON.stringify(logger.lines), CASES, inJson);

    const cli = async (...args: string[]) => {
      const { code, output } = await runCliInProcess(args, { DATABASE_URL: suite.db.url });
      assert.equal(code, 0, output);
      return output;
    };
    const listed = await cli('dlq', 'list', '--json', '--limit', '1000');
    assert.equal(JSON.parse(listed).length, CASES.length);
    assertRedacted('dlq list --json', listed, CASES, inJson);
    let shown = '';
    let shownJson = '';
    for (const { id } of deadLetters) {
      shown += await cli('dlq', 'show', id);
      const json = await cli('dlq', 'show', id, '--json');
      JSON.parse(json);
      shownJson += json;
    }
    // Human output prints the error message as is and the event data as JSON.
    assertRedacted('dlq show', shown, CASES, message);
    assertRedacted('dlq show (event data)', shown, CASES, inJson);
    assertRedacted('dlq show --json', shownJson, CASES, inJson);
    const human = await cli('dlq', 'list');
    assert.ok(human.includes('workshop inventory for com.shop.orders'), human);
    for (const c of CASES) assert.ok(!human.includes(c.given), `dlq list, ${c.name}`);

    const metrics = await broker.getMetrics();
    assert.ok(metrics.includes(`queue="${QUEUE}"`), 'metrics name the queue intact');
    for (const c of CASES) assert.ok(!metrics.includes(c.given), `metrics, ${c.name}`);
  });

  it('never echoes a password option in a validation error, whatever its type', () => {
    for (const password of [31415926, '', { shop: true }] as unknown[]) {
      assert.throws(
        () => new PostgresEventBroker({ host: 'arvo-postgres', password: password as string }),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === 'password' &&
          !error.message.includes('31415926') &&
          !error.message.includes('shop'),
      );
    }
  });
});
