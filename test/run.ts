/**
 * `npm test`: starts one embedded PostgreSQL (unless DATABASE_URL points at a server), runs every
 * `test/**\/*.test.ts` file with Node's test runner against it (each file creates its own database),
 * then stops the server. Arguments filter test files by substring: `npm test -- lock memory`.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PostgresServer, startEmbeddedPostgres } from './support/postgres-server';

const root = path.dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2).filter((arg) => !arg.startsWith('-'));
const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
  .filter((file) => file.endsWith('.test.ts'))
  .map((file) => path.join('test', file))
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .sort();

if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

let server: PostgresServer | undefined;
if (!process.env.DATABASE_URL) {
  const started = Date.now();
  // fsync off: tests measure behaviour, not durability of the test server's disk.
  server = await startEmbeddedPostgres({
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off'],
  });
  console.log(`embedded PostgreSQL started in ${Date.now() - started} ms`);
}
const env = { ...process.env, DATABASE_URL: process.env.DATABASE_URL ?? server?.url };

const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-reporter=spec',
      `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '3'}`,
      ...files,
    ],
    { stdio: 'inherit', env },
  );
  child.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0)));
});

await server?.stop();
process.exit(code);
