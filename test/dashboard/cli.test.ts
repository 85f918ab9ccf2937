/**
 * `arvo-postgres dashboard` as a real subprocess: it serves on 127.0.0.1 by default, read-only,
 * stops on SIGTERM with exit 0, refuses --enable-actions without a token, and prints no password.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../broker/support';
import { createTestDatabase, createTestRole, type TestDatabase } from '../support/database';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PASSWORD = 'Dashboard-Cli-Pw-4711';

function start(args: string[], env: Record<string, string | undefined> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dashboard', ...args], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: undefined, ARVO_DASHBOARD_TOKEN: undefined, ...env },
  });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk) => {
    output.stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output.stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return { child, output, exited };
}

describe('arvo-postgres dashboard (subprocess)', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let url: string;

  before(async () => {
    db = await createTestDatabase('dashboard_cli');
    url = await createTestRole(db, { name: `dash_cli_${process.pid}`, password: PASSWORD, superuser: true });
  });

  after(async () => {
    await db?.drop();
  });

  it('serves read-only on 127.0.0.1 until SIGTERM', async () => {
    const run = start(['--port', '0', '--url', url]);
    const base = await waitFor(
      'the dashboard to listen',
      () => /on (http:\/\/127\.0\.0\.1:\d+\/) \(read-only\)/.exec(run.output.stdout)?.[1],
      30_000,
    );
    // No tables yet: the page says how to create them (and never shows the password).
    const page = await fetch(base);
    const body = await page.text();
    assert.equal(page.status, 503, body);
    assert.match(body, /arvo-postgres migrate/);
    assert.ok(!body.includes(PASSWORD));
    const refused = await fetch(new URL('replay', base), { method: 'POST' });
    assert.equal(refused.status, 403);
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.output.stderr);
    assert.ok(!run.output.stdout.includes(PASSWORD) && !run.output.stderr.includes(PASSWORD));
  });

  it('refuses --enable-actions without $ARVO_DASHBOARD_TOKEN, and a short token', async () => {
    const missing = start(['--enable-actions', '--url', url]);
    assert.equal(await missing.exited, 2);
    assert.match(missing.output.stderr, /ARVO_DASHBOARD_TOKEN/);
    const short = start(['--enable-actions', '--url', url], { ARVO_DASHBOARD_TOKEN: 'short' });
    assert.equal(await short.exited, 2);
    assert.match(short.output.stderr, /`actionToken`: expected a string of at least 16 characters/);
  });
});
