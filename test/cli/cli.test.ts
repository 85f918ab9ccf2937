import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { clientEvent, handler, memoryLogger, replyTo, waitFor } from '../broker/support';
import { createArvoToolsTables } from '../support/arvo-tools-layout';
import { createTestDatabase, createTestRole, type TestDatabase, testPool } from '../support/database';
import { cli, type Run, root } from './run-cli';

const suffix = randomBytes(4).toString('hex');
const ROLE = `cli_ops_${suffix}`;
const PASSWORD = `Cli-Pw-${suffix}-secret`;
const COMMANDS = ['stats', 'dlq', 'workflows', 'migrate', 'doctor', 'health'];

function assertNoSecret(run: Run): void {
  assert.ok(!run.stdout.includes(PASSWORD), `password in stdout:\n${run.stdout}`);
  assert.ok(!run.stderr.includes(PASSWORD), `password in stderr:\n${run.stderr}`);
}

describe('arvo-postgres CLI (subprocess)', { timeout: 420_000 }, () => {
  let db: TestDatabase;
  let admin: pg.Pool;
  /** The test database as a role with a distinctive password, given with --url. */
  let url: string;
  let broker: PostgresEventBroker | undefined;
  const runs: Run[] = [];
  const run = async (args: string[], env: Record<string, string | undefined> = {}) => {
    const result = await cli(args, env);
    runs.push(result);
    return result;
  };

  before(async () => {
    db = await createTestDatabase('cli');
    admin = testPool(db.url, 2);
    url = await createTestRole(db, { name: ROLE, password: PASSWORD, superuser: true });
  });

  after(async () => {
    await broker?.stop({ timeoutMs: 2000 });
    await admin?.end();
    await db?.drop();
    // Whatever a command printed, the password never appears.
    for (const result of runs) assertNoSecret(result);
  });

  it('prints help for every command with exit 0, and usage errors with exit 2', async () => {
    const top = await run(['--help']);
    assert.equal(top.code, 0);
    for (const command of COMMANDS) assert.match(top.stdout, new RegExp(`^  ${command} `, 'm'));
    for (const command of COMMANDS) {
      const help = await run([command, '--help']);
      assert.equal(help.code, 0, `${command} --help`);
      assert.match(help.stdout, new RegExp(`arvo-postgres ${command}`));
      assert.match(help.stdout, /--url <url>/);
    }
    assert.equal((await run([])).code, 2);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const badOption = await run(['stats', '--bogus'], { DATABASE_URL: url });
    assert.equal(badOption.code, 2);
    assert.match(badOption.stderr, /--bogus/);
    const noDatabase = await run(['stats']);
    assert.equal(noDatabase.code, 2);
    assert.match(noDatabase.stderr, /pass --url or set DATABASE_URL/);
    assert.equal((await run(['dlq'], { DATABASE_URL: url })).code, 2);
    assert.equal((await run(['dlq', 'purge'], { DATABASE_URL: url })).code, 2);
    assert.equal((await run(['dlq', 'replay', 'not-a-uuid'], { DATABASE_URL: url })).code, 2);
    assert.equal((await run(['workflows', '--stuck-older-than', '1x'], { DATABASE_URL: url })).code, 2);
    const ancient = await run(['dlq', 'purge', '--older-than', '99999999999999d'], { DATABASE_URL: url });
    assert.equal(ancient.code, 2);
    assert.match(ancient.stderr, /at most ten years/);
    assert.equal((await run(['doctor', '--schema', 'bad-name'], { DATABASE_URL: url })).code, 2);
    // A missing CA file is a usage error naming the parameter, not a bare ENOENT per connection.
    const missingCaUrl = new URL(url);
    missingCaUrl.searchParams.set('sslmode', 'verify-full');
    missingCaUrl.searchParams.set('sslrootcert', '/missing/ca.crt');
    const missingCa = await run(['doctor', '--url', missingCaUrl.toString()]);
    assert.equal(missingCa.code, 2);
    assert.match(
      missingCa.stderr,
      /connectionString`: sslrootcert names a file that cannot be read: "\/missing\/ca.crt" \(ENOENT\)/,
    );
  });

  it('migrate --print-sql prints the memory and pg-boss DDL without a database', async () => {
    const printed = await run(['migrate', '--print-sql', '--schema', 'ops', '--state-table', 'wf']);
    assert.equal(printed.code, 0);
    assert.match(printed.stdout, /CREATE TABLE IF NOT EXISTS ops\.wf \(/);
    assert.match(printed.stdout, /CREATE TABLE IF NOT EXISTS ops\.arvo_workflow_lock \(/);
    assert.match(printed.stdout, /CREATE INDEX IF NOT EXISTS wf_status_updated_at_idx ON ops\.wf/);
    assert.match(printed.stdout, /CREATE TABLE pgboss\.job/);
    assert.match(printed.stdout, /CREATE TABLE pgboss\.version/);
  });

  it('doctor reports a bare database, migrate fixes it, doctor finds a dropped index', async () => {
    const bare = await run(['doctor', '--url', url]);
    assert.equal(bare.code, 1);
    assert.match(bare.stdout, /^FAIL {2}memory tables/m);
    assert.match(bare.stdout, /table public\.arvo_workflow_state does not exist/);
    assert.match(bare.stdout, /pg-boss is not installed/);
    assert.match(bare.stdout, /^FAIL {2}broker tables/m);
    assert.match(bare.stdout, /table pgboss\.arvo_queue_control does not exist/);

    const migrated = await run(['migrate', '--url', url]);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.equal(
      migrated.stdout,
      'memory: public.arvo_workflow_state and public.arvo_workflow_lock ready (layout version 2)\n' +
        'pg-boss: schema pgboss at version 46\n' +
        'broker: pgboss.arvo_queue_control ready (layout version 1)\n',
    );
    const healthy = await run(['doctor', '--url', url]);
    assert.equal(healthy.code, 0, healthy.stdout);
    assert.match(healthy.stdout, /^ok {4}pg-boss schema {5}pgboss at version 46, no drift$/m);
    // Five indexes of the state table, one of the lock table and three of the history, read from their migrations.
    assert.match(healthy.stdout, /^ok {4}memory indexes {5}9 expected$/m);
    assert.match(
      healthy.stdout,
      /^ok {4}broker tables {6}pgboss\.arvo_queue_control, public\.arvo_event_history$/m,
    );
    assert.match(healthy.stdout, /^ok {4}broker migrations {2}broker:arvo_queue_control$/m);
    assert.match(healthy.stdout, /^ok {4}memory tables {6}.*\(layout version 2, 1\)$/m);
    assert.match(healthy.stdout, /no problems found\n$/);

    await admin.query('DROP INDEX public.arvo_workflow_state_status_updated_at_idx');
    await admin.query('ALTER TABLE public.arvo_workflow_lock ALTER COLUMN owner DROP NOT NULL');
    const broken = await run(['doctor', '--json'], { DATABASE_URL: url });
    assert.equal(broken.code, 1);
    const report = JSON.parse(broken.stdout);
    assert.equal(report.ok, false);
    const problems = (name: string) => report.checks.find((check: any) => check.name === name).problems;
    assert.deepEqual(problems('memory indexes'), [
      'index arvo_workflow_state_status_updated_at_idx on public.arvo_workflow_state (status, updated_at) is missing',
    ]);
    assert.deepEqual(problems('memory tables'), [
      'column public.arvo_workflow_lock.owner is nullable, expected NOT NULL',
    ]);
    assert.deepEqual(problems('pg-boss schema'), []);

    // An index of the expected name on other columns, and one made partial, are reported too.
    await admin.query(
      'CREATE INDEX arvo_workflow_state_status_updated_at_idx ON public.arvo_workflow_state (updated_at, status)',
    );
    await admin.query('DROP INDEX public.arvo_workflow_lock_expires_at_idx');
    await admin.query(
      'CREATE INDEX arvo_workflow_lock_expires_at_idx ON public.arvo_workflow_lock (expires_at) WHERE owner IS NOT NULL',
    );
    const misbuilt = await run(['doctor', '--json'], { DATABASE_URL: url });
    assert.equal(misbuilt.code, 1);
    assert.deepEqual(
      JSON.parse(misbuilt.stdout).checks.find((check: any) => check.name === 'memory indexes').problems,
      [
        'index arvo_workflow_state_status_updated_at_idx on public.arvo_workflow_state is CREATE INDEX arvo_workflow_state_status_updated_at_idx ON public.arvo_workflow_state USING btree (updated_at, status), expected … USING btree (status, updated_at)',
        'index arvo_workflow_lock_expires_at_idx on public.arvo_workflow_lock is CREATE INDEX arvo_workflow_lock_expires_at_idx ON public.arvo_workflow_lock USING btree (expires_at) WHERE (owner IS NOT NULL), expected … USING btree (expires_at)',
      ],
    );
    await admin.query('DROP INDEX public.arvo_workflow_state_status_updated_at_idx');
    await admin.query('DROP INDEX public.arvo_workflow_lock_expires_at_idx');
    await admin.query(
      'CREATE INDEX arvo_workflow_state_status_updated_at_idx ON public.arvo_workflow_state (status, updated_at)',
    );
    await admin.query(
      'CREATE INDEX arvo_workflow_lock_expires_at_idx ON public.arvo_workflow_lock (expires_at)',
    );
    await admin.query('ALTER TABLE public.arvo_workflow_lock ALTER COLUMN owner SET NOT NULL');
    assert.equal((await run(['doctor', '--url', url])).code, 0);
  });

  it('stats, dlq list/show/replay/purge against a running broker', async () => {
    const calls = new Map<string, number>();
    broker = new PostgresEventBroker({
      connectionString: db.url,
      logger: memoryLogger(),
      defaults: { worker: { retryLimit: 1, retryDelay: 0, retryBackoff: false } },
    });
    await broker.register(handler('com.cli.ok', async (event) => [replyTo(event, 'evt.cli.ok.done')]));
    await broker.register(
      handler('com.cli.fail', async (event) => {
        calls.set(event.id, (calls.get(event.id) ?? 0) + 1);
        throw new Error(`downstream refused (call ${calls.get(event.id)})`);
      }),
    );
    await broker.onWorkflowComplete({ source: 'com.test.client', listener: async () => {} });
    await broker.start();
    const failing = [clientEvent('com.cli.fail', { n: 1 }), clientEvent('com.cli.fail', { n: 2 })];
    for (const event of failing) await broker.dispatch(event);
    for (let i = 0; i < 3; i += 1) await broker.dispatch(clientEvent('com.cli.ok', { i }));
    await waitFor('two dead letters and three completions', async () => {
      const stats = await broker!.getStats();
      const of = (name: string) => stats.find((entry) => entry.name === name);
      return of('com.cli.fail')?.deadLettered === 2 && of('com.cli.ok')?.completed === 3;
    });

    // stats: the broker's numbers, without a broker.
    const statsJson = await run(['stats', '--json', '--url', url]);
    assert.equal(statsJson.code, 0, statsJson.stderr);
    const cliStats = JSON.parse(statsJson.stdout) as any[];
    const expected = (await broker.getStats({ queues: 'all' })).filter(
      (entry) => !entry.name.startsWith('__pgboss__'),
    );
    const strip = (list: any[]) => list.map(({ oldestQueuedAgeMs: _, ...rest }) => rest);
    assert.deepEqual(strip(cliStats), strip(expected));
    const statsTable = await run(['stats', '--queue', 'com.cli.fail', '--queue', 'com.cli.ok'], {
      DATABASE_URL: url,
    });
    assert.equal(statsTable.code, 0);
    const lines = statsTable.stdout.trimEnd().split('\n');
    assert.match(
      lines[0]!,
      /^QUEUE +QUEUED +ACTIVE +DEFERRED +FAILED +COMPLETED +DEAD-LETTERED +OLDEST +PAUSED$/,
    );
    assert.match(lines[1]!, /^com\.cli\.fail +0 +0 +0 +2 +0 +2 +- +no$/);
    assert.match(lines[2]!, /^com\.cli\.ok +0 +0 +0 +0 +3 +0 +- +no$/);
    assert.equal(lines.length, 3);

    // dlq list / show
    const listed = await run(['dlq', 'list', '--json'], { DATABASE_URL: url });
    assert.equal(listed.code, 0);
    const letters = JSON.parse(listed.stdout) as any[];
    assert.deepEqual(
      letters.map((letter) => letter.event.id).sort(),
      failing.map((event) => event.id).sort(),
    );
    assert.ok(letters.every((letter) => letter.totalAttempts === 2 && letter.sourceQueue === 'com.cli.fail'));
    const table = await run(['dlq', 'list'], { DATABASE_URL: url });
    assert.match(table.stdout, /^ID +SOURCE QUEUE +ATTEMPTS +FIRST FAILURE +LAST FAILURE +KIND +ERROR$/m);
    for (const letter of letters) {
      assert.match(
        table.stdout,
        new RegExp(`^${letter.id} +com\\.cli\\.fail +2 +.*Error: downstream refused`, 'm'),
      );
    }
    const target = letters.find((letter) => letter.event.id === failing[0]!.id);
    const shown = await run(['dlq', 'show', target.id], { DATABASE_URL: url });
    assert.equal(shown.code, 0);
    assert.match(
      shown.stdout,
      /history \(1 earlier failures\):\n {2}\S+ {2}com\.cli\.fail attempt 1 {2}infrastructure/,
    );
    assert.match(shown.stdout, /error: +Error: downstream refused \(call 2\)/);
    const missing = await run(['dlq', 'show', '00000000-0000-4000-8000-000000000000'], { DATABASE_URL: url });
    assert.equal(missing.code, 1);

    const misapplied = await run(['dlq', 'show', target.id, '--queue', 'com.cli.fail'], {
      DATABASE_URL: url,
    });
    assert.equal(misapplied.code, 2);
    assert.match(misapplied.stderr, /--queue does not apply to dlq show/);

    // replay one (its id typed in upper case): it fails again and comes back with its history.
    const replayed = await run(['dlq', 'replay', target.id.toUpperCase()], { DATABASE_URL: url });
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(
      replayed.stdout,
      new RegExp(`^replayed 1 dead letter\\n {2}${target.id} -> com\\.cli\\.fail \\(job `),
    );
    const back = await waitFor('the replayed event back in the DLQ', async () => {
      const again = await run(['dlq', 'list', '--json', '--queue', 'com.cli.fail'], { DATABASE_URL: url });
      return (JSON.parse(again.stdout) as any[]).find(
        (letter) => letter.event.id === failing[0]!.id && letter.totalAttempts === 4,
      );
    });
    assert.deepEqual(
      back.history.map((entry: any) => entry.error.message),
      ['downstream refused (call 1)', 'downstream refused (call 2)', 'downstream refused (call 3)'],
    );
    const notThere = await run(['dlq', 'replay', target.id], { DATABASE_URL: url });
    assert.equal(notThere.code, 1);
    assert.match(notThere.stderr, new RegExp(`not replayed \\(no such waiting dead letter\\): ${target.id}`));

    // purge: nothing older than a day; then everything from that source.
    const young = await run(['dlq', 'purge', '--older-than', '1d'], { DATABASE_URL: url });
    assert.equal(young.code, 0);
    assert.equal(young.stdout, 'purged 0 dead letters\n');
    const purged = await run(['dlq', 'purge', '--older-than', '0s', '--queue', 'com.cli.fail'], {
      DATABASE_URL: url,
    });
    assert.equal(purged.code, 0);
    assert.equal(purged.stdout, 'purged 2 dead letters\n');
    assert.equal((await run(['dlq', 'list'], { DATABASE_URL: url })).stdout, 'no dead letters\n');
  });

  it('escapes terminal control characters in human output; --json stays valid and exact', async () => {
    // Clear screen, a one-byte CSI (C1), bell, DEL, carriage return and an OSC window title.
    const hostile = 'a\u001b[2J b\u009b31m c\u0007 d\u007f e\r f\u001b]0;owned\u0007';
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
    const controls = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
    const escaping = new PostgresEventBroker({
      connectionString: db.url,
      logger: memoryLogger(),
      defaults: { worker: { retryLimit: 0 } },
    });
    try {
      await escaping.register(
        handler('com.cli.escape', async () => {
          throw new Error(`refused ${hostile}`);
        }),
      );
      await escaping.start();
      const event = clientEvent('com.cli.escape', { note: hostile });
      await escaping.dispatch(event);
      const letter = await waitFor('the hostile event is dead-lettered', async () => {
        const listed = await run(['dlq', 'list', '--json', '--queue', 'com.cli.escape'], {
          DATABASE_URL: url,
        });
        return (JSON.parse(listed.stdout) as any[])[0];
      });
      // JSON: the exact strings, control characters included, after parsing.
      assert.equal(letter.error.message, `refused ${hostile}`);
      const shownJson = await run(['dlq', 'show', letter.id, '--json'], { DATABASE_URL: url });
      assert.equal(JSON.parse(shownJson.stdout).event.data.note, hostile);
      assert.ok(!controls.test(shownJson.stdout), 'no raw control character in --json output');
      // Human output: every control character visible as an escape, nothing for the terminal to act on.
      for (const args of [
        ['dlq', 'list', '--queue', 'com.cli.escape'],
        ['dlq', 'show', letter.id],
      ]) {
        const human = await run(args, { DATABASE_URL: url });
        assert.equal(human.code, 0, human.stderr);
        assert.ok(!controls.test(human.stdout), `raw control character in ${args.join(' ')}`);
        // (dlq list puts the error on one line: `\r` is white space there.)
        assert.ok(human.stdout.includes('refused a\\u001b[2J b\\u009b31m c\\u0007 d\\u007f e'), human.stdout);
      }
      const show = await run(['dlq', 'show', letter.id], { DATABASE_URL: url });
      assert.ok(show.stdout.includes('e\\u000d f\\u001b]0;owned\\u0007'), show.stdout);
      // A workflow subject (free text in the memory) in the stuck list.
      await admin.query(
        `INSERT INTO public.arvo_workflow_state (subject, data, version, root_subject, status, orchestrator, updated_at)
           VALUES ($1, '{}', 1, $1, 'active', 'arvo.orc.escape', now() - interval '10 hours')`,
        [`subject ${hostile}`],
      );
      try {
        const stuck = await run(['workflows', '--stuck-older-than', '9h'], { DATABASE_URL: url });
        assert.ok(!controls.test(stuck.stdout), stuck.stdout);
        assert.ok(stuck.stdout.includes('subject a\\u001b[2J b\\u009b31m c\\u0007'), stuck.stdout);
        const stuckJson = await run(['workflows', '--stuck-older-than', '9h', '--json'], {
          DATABASE_URL: url,
        });
        assert.equal(JSON.parse(stuckJson.stdout).stuck[0].subject, `subject ${hostile}`);
        assert.ok(!controls.test(stuckJson.stdout));
      } finally {
        await admin.query(`DELETE FROM public.arvo_workflow_state WHERE orchestrator = 'arvo.orc.escape'`);
      }
      // Error messages printed by the CLI itself are escaped too.
      const unknown = await run(['dlq', 'show', hostile], { DATABASE_URL: url });
      assert.ok(!controls.test(unknown.stderr), unknown.stderr);
    } finally {
      await escaping.stop({ timeoutMs: 2000 });
    }
  });

  it('stats --watch refreshes until interrupted, then exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'stats', '--watch', '1'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: url },
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await waitFor('two refreshes', () => (stdout.match(/^QUEUE /gm) ?? []).length >= 2, 30_000);
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.match(stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z\nQUEUE /m);
  });

  it('workflows counts by orchestrator and status and lists stuck ones', async () => {
    const insert = `INSERT INTO public.arvo_workflow_state
      (subject, data, version, root_subject, status, orchestrator, updated_at)
      VALUES ($1, '{}', 1, $1, $2, $3, now() - $4::interval)`;
    await admin.query(insert, ['wf-old-1', 'active', 'arvo.orc.order', '2 hours']);
    await admin.query(insert, ['wf-old-2', null, 'arvo.orc.order', '3 hours']);
    await admin.query(insert, ['wf-done', 'done', 'arvo.orc.order', '5 hours']);
    await admin.query(insert, ['wf-recent', 'active', 'arvo.orc.ship', '1 minute']);
    // A failure record is finished (the retention sweep deletes it), whatever its status says.
    await admin.query(
      `INSERT INTO public.arvo_workflow_state
        (subject, data, version, root_subject, status, execution_status, orchestrator, updated_at)
        VALUES ('wf-failed', '{}', 1, 'wf-failed', 'active', 'failure', 'arvo.orc.zfail', now() - interval '4 hours')`,
    );

    const counts = await run(['workflows'], { DATABASE_URL: url });
    assert.equal(counts.code, 0);
    const rows = counts.stdout.trimEnd().split('\n');
    assert.match(rows[0]!, /^ORCHESTRATOR +STATUS +COUNT +OLDEST UPDATE$/);
    assert.match(rows[1]!, /^arvo\.orc\.order +- +1 /);
    assert.match(rows[2]!, /^arvo\.orc\.order +active +1 /);
    assert.match(rows[3]!, /^arvo\.orc\.order +done +1 /);
    assert.match(rows[4]!, /^arvo\.orc\.ship +active +1 /);

    const stuck = await run(['workflows', '--stuck-older-than', '1h'], { DATABASE_URL: url });
    assert.equal(stuck.code, 1, 'stuck workflows are a problem for scripts');
    assert.match(
      stuck.stdout,
      /2 unfinished workflows idle longer than 1h:\nSUBJECT +ORCHESTRATOR +STATUS +IDLE\n/,
    );
    assert.match(
      stuck.stdout,
      /^wf-old-2 +arvo\.orc\.order +- +3h 0m\nwf-old-1 +arvo\.orc\.order +active +2h 0m$/m,
    );
    const json = await run(['workflows', '--stuck-older-than', '4h', '--json'], { DATABASE_URL: url });
    assert.equal(json.code, 0);
    assert.deepEqual(JSON.parse(json.stdout).stuck, []);
    const other = await run(['workflows', '--state-table', 'nope'], { DATABASE_URL: url });
    assert.equal(other.code, 1);
    assert.match(other.stderr, /table public\.nope does not exist/);
  });

  it('migrate --from-arvo-tools: dry-run report, refusal while a lock is live, copy, idempotent re-run', async () => {
    await createArvoToolsTables(admin);
    await admin.query(
      `INSERT INTO arvopg_mm_state (subject, data, version, execution_status, parent_subject, initiator, source)
       VALUES ('wf-root', '{"status":"active"}', 4, 'normal', NULL, 'com.test.client', 'arvo.orc.order'),
              ('wf-child', '{"status":"active"}', 2, 'normal', 'wf-root', 'arvo.orc.order', 'arvo.orc.pay');
       INSERT INTO arvopg_mm_hierarchy (subject, parent_subject, root_subject)
       VALUES ('wf-root', NULL, 'wf-root'), ('wf-child', 'wf-root', 'wf-root');
       INSERT INTO arvopg_mm_lock (subject, locked_at, expires_at) VALUES ('wf-root', now(), now() + interval '2 minutes')`,
    );
    const target = ['--state-table', 'copied_state', '--lock-table', 'copied_lock', '--url', url];
    const dry = await run(['migrate', '--from-arvo-tools', '--dry-run', '--time-zone', 'UTC', ...target]);
    assert.equal(dry.code, 1, dry.stderr);
    assert.match(
      dry.stdout,
      /public\.arvopg_mm_state holds 2 workflow records \(1 root, 1 child\).*timestamps read in UTC/,
    );
    assert.match(
      dry.stdout,
      /^dry run: 2 would be copied to public\.copied_state, 0 already there; nothing changed$/m,
    );
    assert.match(dry.stdout, /^1 lock in public\.arvopg_mm_lock still live/m);
    const refused = await run(['migrate', '--from-arvo-tools', ...target]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /1 workflow lock in public\.arvopg_mm_lock is still live/);
    await admin.query(`UPDATE arvopg_mm_lock SET expires_at = now() - interval '1 minute'`);
    const copied = await run(['migrate', '--from-arvo-tools', ...target]);
    assert.equal(copied.code, 0, copied.stderr);
    assert.match(copied.stdout, /^copied 2 to public\.copied_state, 0 already there$/m);
    assert.match(copied.stdout, /^pg-boss: schema pgboss at version \d+$/m);
    const { rows } = await admin.query(
      'SELECT subject, version::int AS version, root_subject FROM copied_state ORDER BY subject',
    );
    assert.deepEqual(rows, [
      { subject: 'wf-child', version: 2, root_subject: 'wf-root' },
      { subject: 'wf-root', version: 4, root_subject: 'wf-root' },
    ]);
    const again = await run(['migrate', '--from-arvo-tools', ...target]);
    assert.match(again.stdout, /^copied 0 to public\.copied_state, 2 already there$/m);
    const misuse = await run(['migrate', '--dry-run', '--url', url]);
    assert.equal(misuse.code, 2);
  });

  it('never prints the password of --url, even when the connection fails', async () => {
    const unreachable = await run(['stats', '--url', `postgres://${ROLE}:${PASSWORD}@127.0.0.1:1/nowhere`]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /^arvo-postgres stats: .*ECONNREFUSED/);
    const parsed = new URL(url);
    parsed.pathname = '/no_such_database';
    const noDatabase = await run(['doctor', '--url', parsed.toString()]);
    assert.equal(noDatabase.code, 1);
    assert.match(noDatabase.stdout, /^FAIL {2}connection/m);
    const garbage = await run(['stats', '--url', `mysql://${ROLE}:${PASSWORD}@host/db`]);
    assert.equal(garbage.code, 2);
    for (const result of [unreachable, noDatabase, garbage]) assertNoSecret(result);
  });
});
