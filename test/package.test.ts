import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The published entry points, consumed the way users consume them: a separate project that has
// `arvo-postgres` in node_modules and loads it with `import` (ESM) and `require` (CommonJS).
describe('package entry points', () => {
  let consumer: string;

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
});
