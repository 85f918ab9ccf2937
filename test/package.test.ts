import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PgBoss } from 'pg-boss';
import { createTestDatabase, type TestDatabase } from './support/database';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The published entry points, consumed the way users consume them: a separate project that has
// `arvo-postgres` in node_modules and loads it with `import` (ESM) and `require` (CommonJS).
describe('package entry points', { timeout: 240_000 }, () => {
  let consumer: string;
  let db: TestDatabase | undefined;

  before(async () => {
    await run('npx', ['tsup'], { cwd: root });
    consumer = await mkdtemp(path.join(tmpdir(), 'arvo-postgres-consumer-'));
    await mkdir(path.join(consumer, 'node_modules'));
    await symlink(root, path.join(consumer, 'node_modules', 'arvo-postgres'), 'dir');
    await writeFile(
      path.join(consumer, 'esm.mjs'),
      `import * as lib from 'arvo-postgres';
       console.log(JSON.stringify(Object.keys(lib).sort()));`,
    );
    await writeFile(
      path.join(consumer, 'cjs.cjs'),
      `const lib = require('arvo-postgres');
       console.log(JSON.stringify(Object.keys(lib).sort()));`,
    );
  });

  after(async () => {
    await rm(consumer, { recursive: true, force: true });
    await db?.drop();
  });

  it('exports the same public API to ESM and CommonJS consumers', async () => {
    const esm = JSON.parse((await run(process.execPath, ['esm.mjs'], { cwd: consumer })).stdout) as string[];
    const cjs = JSON.parse((await run(process.execPath, ['cjs.cjs'], { cwd: consumer })).stdout) as string[];
    assert.deepEqual(esm, cjs);
    for (const name of [
      'PostgresEventBroker',
      'connectPostgresMachineMemory',
      'PostgresLock',
      'InvalidOptionError',
    ]) {
      assert.ok(esm.includes(name), `${name} missing from ${esm.join(', ')}`);
    }
  });

  it('ships type declarations for both module systems', async () => {
    const pkg = JSON.parse(
      (
        await run(process.execPath, ['-p', 'JSON.stringify(require("arvo-postgres/package.json").exports)'], {
          cwd: consumer,
        })
      ).stdout,
    );
    for (const entry of [
      pkg['.'].import.types,
      pkg['.'].require.types,
      pkg['.'].import.default,
      pkg['.'].require.default,
    ]) {
      await run(process.execPath, [
        '-e',
        `require('fs').accessSync(${JSON.stringify(path.join(root, entry))})`,
      ]);
    }
  });

  it('runs the built arvo-postgres bin: --help, migrate and stats against a database', async () => {
    const { bin } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
    const cli = path.join(consumer, 'node_modules', 'arvo-postgres', bin['arvo-postgres']);
    assert.match(await readFile(cli, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const arvoPostgres = (...args: string[]) =>
      run(process.execPath, [cli, ...args], { cwd: consumer, env: { ...process.env, DATABASE_URL: '' } });

    const help = await arvoPostgres('--help');
    for (const command of ['stats', 'dlq', 'workflows', 'migrate', 'doctor']) {
      assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
    }

    db = await createTestDatabase('package_bin');
    const migrated = await arvoPostgres('migrate', '--url', db.url);
    assert.match(migrated.stdout, /^pg-boss: schema pgboss at version \d+$/m);
    // Two jobs waiting in a queue, put there by pg-boss itself.
    const boss = new PgBoss({
      connectionString: db.url,
      migrate: false,
      supervise: false,
      schedule: false,
      max: 2,
    });
    boss.on('error', () => {});
    await boss.start();
    try {
      await boss.createQueue('com.package.waiting');
      await boss.send('com.package.waiting', { n: 1 });
      await boss.send('com.package.waiting', { n: 2 });
    } finally {
      await boss.stop({ graceful: false, close: true });
    }
    const stats = await arvoPostgres('stats', '--url', db.url, '--queue', 'com.package.waiting', '--json');
    const [queue] = JSON.parse(stats.stdout);
    assert.equal(queue.name, 'com.package.waiting');
    assert.equal(queue.queued, 2);
    assert.equal(queue.active, 0);
    assert.equal(queue.total, 2);

    // A usage error exits 2 (execFile rejects on a non-zero exit).
    await assert.rejects(arvoPostgres('stats', '--bogus'), (error: { code?: number; stderr?: string }) => {
      assert.equal(error.code, 2);
      assert.match(error.stderr ?? '', /--bogus/);
      return true;
    });
  });

  it('ships the dashboard assets, and both builds serve them', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json'], { cwd: root });
    const packed = (JSON.parse(stdout)[0].files as Array<{ path: string }>).map((file) => file.path);
    for (const asset of ['dist/dashboard-assets/dashboard.css', 'dist/dashboard-assets/dashboard.js']) {
      assert.ok(packed.includes(asset), `${asset} is not in the package`);
    }
    // No database is needed for a static file: the pool never connects.
    const serveAsset = (loader: string) => `${loader}
      const http = require('node:http');
      const dashboard = lib.createDashboard({ connectionString: 'postgres://nobody@127.0.0.1:1/none' });
      const server = http.createServer((req, res) => dashboard(req, res)).listen(0, '127.0.0.1', async () => {
        const response = await fetch('http://127.0.0.1:' + server.address().port + '/assets/dashboard.js');
        console.log(response.status, (await response.text()).includes('data-refresh') || 'missing');
        server.close();
        await dashboard.close();
      });`;
    await writeFile(
      path.join(consumer, 'assets.mjs'),
      serveAsset(
        "import * as lib from 'arvo-postgres'; import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      ),
    );
    await writeFile(path.join(consumer, 'assets.cjs'), serveAsset("const lib = require('arvo-postgres');"));
    for (const script of ['assets.mjs', 'assets.cjs']) {
      const { stdout: served } = await run(process.execPath, [script], { cwd: consumer });
      assert.equal(served.trim(), '200 true', script);
    }
  });
});
