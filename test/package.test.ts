import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createArvoEvent } from 'arvo-core';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { PostgresEventBroker } from '../src/broker/index';
import { silentLogger } from '../src/shared/logger';
import { createTestDatabase, type TestDatabase } from './support/database';
import { type ConsumerApp, installPackedPackage, STRICT_NODE } from './support/packed-package';
import { root } from './support/process';
import { waitFor } from './support/wait';

const run = promisify(execFile);
/** The examples that import 'arvo-postgres' (demo.ts and step-orchestrator.ts run from the repository). */
const EXAMPLES = ['greeting.ts', 'service-app.ts', 'worker.ts', 'operator.ts'];
/** A strict program over the public API: TS2322 here would hit every orchestrator user. */
const TYPE_CHECK = `import { connectPostgresMachineMemory, type IMachineMemory, PostgresEventBroker } from 'arvo-postgres';
type MachineMemoryRecord = {
  subject: string; parentSubject: string | null; status: string; value: string | Record<string, any> | null;
  state: unknown; consumed: object[]; produced: object[]; machineDefinition: string | null;
};
export async function wire(connectionString: string): Promise<void> {
  const memory: IMachineMemory<MachineMemoryRecord> = await connectPostgresMachineMemory({ connectionString });
  const broker = new PostgresEventBroker({ connectionString });
  const stats: number = (await broker.getStats())[0]?.queued ?? 0;
  void [memory, stats];
}
`;

// The package as users get it: `npm pack`, installed into a fresh app with npm, loaded from an ESM and
// a CommonJS app, compiled by a strict tsc with skipLibCheck false, and the examples run against it.
describe('the packed package', { timeout: 600_000 }, () => {
  let consumer: ConsumerApp;
  let app: string;
  let db: TestDatabase | undefined;

  before(async () => {
    consumer = await installPackedPackage();
    app = consumer.dir;
  });

  after(async () => {
    await consumer?.remove();
    await db?.drop();
  });

  it('ships the builds, declarations and docs only: no source maps, no CommonJS CLI', async () => {
    const files = (
      await readdir(path.join(app, 'node_modules', 'arvo-postgres'), { recursive: true })
    ).sort();
    assert.deepEqual(files, [
      'CHANGELOG.md',
      'README.md',
      'SECURITY.md',
      'dist',
      'dist/cli.js',
      'dist/dashboard-assets',
      'dist/dashboard-assets/dashboard.css',
      'dist/dashboard-assets/dashboard.js',
      'dist/index.cjs',
      'dist/index.d.cts',
      'dist/index.d.ts',
      'dist/index.js',
      'docs',
      'docs/cli.md',
      'docs/configuration.md',
      'docs/migrating-from-arvo-tools.md',
      'docs/scaling.md',
      'examples',
      'examples/greeting.ts',
      'examples/operator.ts',
      'examples/service-app.ts',
      'examples/worker.ts',
      'package.json',
    ]);
    // Every file the README links to (images aside: npm shows only absolute image URLs) ships with it.
    const readme = await readFile(path.join(app, 'node_modules', 'arvo-postgres', 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\(([^)#:]+\.(?:md|ts))\)/g)].map((match) => match[1]!);
    assert.ok(linked.length > 0, 'the README links files of the package');
    for (const link of linked)
      assert.ok(files.includes(link), `the README links ${link}, which the package lacks`);
    const pkg = JSON.parse(
      await readFile(path.join(app, 'node_modules', 'arvo-postgres', 'package.json'), 'utf8'),
    );
    assert.equal(pkg.engines.node, '>=22.12', 'pg-boss 12 requires Node 22.12');
    assert.ok(
      pkg.dependencies['@types/pg'],
      'dist/index.d.ts imports pg: its types must install with the package',
    );
  });

  it('exports the same public API to an ESM app and a CommonJS app', async () => {
    for (const [dir, type, file, load] of [
      ['esm', 'module', 'index.js', `import * as lib from 'arvo-postgres';`],
      ['cjs', 'commonjs', 'index.js', `const lib = require('arvo-postgres');`],
    ] as const) {
      await mkdir(path.join(app, dir));
      await writeFile(path.join(app, dir, 'package.json'), JSON.stringify({ type }));
      await writeFile(
        path.join(app, dir, file),
        `${load}\nconsole.log(JSON.stringify(Object.keys(lib).sort()));\n`,
      );
    }
    const keys = async (dir: string) =>
      JSON.parse(
        (await run(process.execPath, [path.join(dir, 'index.js')], { cwd: app })).stdout,
      ) as string[];
    const esm = await keys('esm');
    assert.deepEqual(await keys('cjs'), esm);
    for (const name of [
      'PostgresEventBroker',
      'connectPostgresMachineMemory',
      'PostgresLock',
      'InvalidOptionError',
    ]) {
      assert.ok(esm.includes(name), `${name} missing from ${esm.join(', ')}`);
    }
  });

  it('compiles under strict tsc with skipLibCheck false, from ESM and CommonJS', async () => {
    await writeFile(path.join(app, 'check.mts'), TYPE_CHECK);
    await writeFile(path.join(app, 'check.cts'), TYPE_CHECK);
    await writeFile(
      path.join(app, 'tsconfig.check.json'),
      JSON.stringify({
        compilerOptions: { ...STRICT_NODE, noEmit: true },
        files: ['check.mts', 'check.cts'],
      }),
    );
    await consumer.tsc(['-p', 'tsconfig.check.json']);
  });

  it('runs the built arvo-postgres bin: --version, migrate and stats against a database', async () => {
    const cli = path.join(app, 'node_modules', '.bin', 'arvo-postgres');
    const arvoPostgres = (...args: string[]) =>
      run(cli, args, { cwd: app, env: { ...process.env, DATABASE_URL: '' } });
    const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
    assert.equal((await arvoPostgres('--version')).stdout, `${version}\n`);
    db = await createTestDatabase('package_bin');
    const migrated = await arvoPostgres('migrate', '--url', db.url);
    assert.match(migrated.stdout, /^pg-boss: schema pgboss at version \d+$/m);
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
    const [queue] = JSON.parse(
      (await arvoPostgres('stats', '--url', db.url, '--queue', 'com.package.waiting', '--json')).stdout,
    );
    assert.deepEqual([queue.name, queue.queued, queue.active, queue.total], ['com.package.waiting', 2, 0, 2]);
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
      path.join(app, 'assets.mjs'),
      serveAsset(
        "import * as lib from 'arvo-postgres'; import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      ),
    );
    await writeFile(path.join(app, 'assets.cjs'), serveAsset("const lib = require('arvo-postgres');"));
    for (const script of ['assets.mjs', 'assets.cjs']) {
      const { stdout: served } = await run(process.execPath, [script], { cwd: app });
      assert.equal(served.trim(), '200 true', script);
    }
  });

  it('runs the examples against the installed package: service app, worker with graceful shutdown, operator', async () => {
    db ??= await createTestDatabase('package_bin');
    const examples = path.join(app, 'examples');
    await mkdir(examples);
    for (const file of EXAMPLES) await cp(path.join(root, 'examples', file), path.join(examples, file));
    await writeFile(
      path.join(examples, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { ...STRICT_NODE, outDir: 'out' },
        include: ['*.ts'],
      }),
    );
    await consumer.tsc(['-p', examples]);
    const env = { ...process.env, DATABASE_URL: db.url };
    const node = (file: string, ...args: string[]) =>
      run(process.execPath, [path.join(examples, 'out', file), ...args], { cwd: app, env });

    // The service app hosts the service and calls it.
    assert.equal((await node('service-app.js', 'Ada')).stdout, 'Hello, Ada!\n');

    // The worker serves requests until SIGTERM, then stops cleanly.
    const worker: ChildProcess = spawn(process.execPath, [path.join(examples, 'out', 'worker.js')], {
      cwd: app,
      env,
    });
    let output = '';
    worker.stdout!.on('data', (chunk) => {
      output += chunk;
    });
    worker.stderr!.on('data', (chunk) => {
      output += chunk;
    });
    const exited = new Promise<number | null>((resolve) => worker.on('close', resolve));
    await waitFor('worker ready', () => output.includes('worker ready: com.example.greeting'), 60_000);
    const caller = new PostgresEventBroker({ connectionString: db.url, logger: silentLogger });
    await caller.start();
    try {
      const reply = await caller.resolve(
        createArvoEvent({
          source: 'com.example.caller',
          type: 'com.example.greeting',
          to: 'com.example.greeting',
          subject: 'package-test',
          data: { name: 'Grace' },
          dataschema: '#/examples/greeting/1.0.0',
        }),
        { timeoutMs: 60_000 },
      );
      assert.equal(reply.data.message, 'Hello, Grace!');
    } finally {
      await caller.stop();
    }
    worker.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    assert.match(output, /SIGTERM: stopping\nworker stopped\n/);
    const active = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      const { rows } = await active.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE state = 'active'`);
      assert.equal(rows[0].n, 0);
    } finally {
      await active.end();
    }

    // The operator script reads what happened, without a broker.
    const report = (await node('operator.js')).stdout;
    assert.match(report, /^com\.example\.greeting: 0 queued, 0 active, 2 completed, 0 dead-lettered$/m);
  });
});
