/**
 * The package as users get it: built, packed with `npm pack`, and installed with npm into a fresh ESM app
 * beside what users install with it, at the versions this repository tests with. Tests compile code against
 * it with a strict tsc and run it there, so they see exactly what an `npm install arvo-postgres` gives.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { root } from './process';

const run = promisify(execFile);

/** The version installed in this repository (some packages do not export their package.json). */
export const versionOf = (name: string): string =>
  JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version;

/** What users install beside the package (README, "Install"), plus Node's types. */
export const CONSUMER_PACKAGES = [
  'arvo-core',
  'arvo-event-handler',
  'zod',
  'pg',
  '@opentelemetry/api',
  '@opentelemetry/context-async-hooks',
  '@types/node',
];

/** What a careful user compiles with: strict, Node's module resolution, every declaration file checked. */
export const STRICT_NODE = {
  strict: true,
  skipLibCheck: false,
  module: 'nodenext',
  moduleResolution: 'nodenext',
  target: 'es2022',
  types: ['node'],
};

/** A fresh app with the packed package installed. */
export interface ConsumerApp {
  /** The app's folder (`package.json` with `"type": "module"`, `node_modules`). */
  readonly dir: string;
  /** Runs npm in `cwd`. */
  npm(args: string[], cwd: string): Promise<{ stdout: string; stderr: string }>;
  /** Runs the app's TypeScript compiler with `args` in the app's folder; rejects with tsc's output on errors. */
  tsc(args: string[]): Promise<void>;
  /** Deletes the app and the tarball. */
  remove(): Promise<void>;
}

/**
 * Builds and packs the package (one test file at a time: `npm run build` empties `dist/`, which a
 * concurrent pack would read half-written), then installs the tarball, {@link CONSUMER_PACKAGES},
 * TypeScript and `extraPackages` (names of packages installed in this repository) into a fresh app.
 */
export async function installPackedPackage(extraPackages: readonly string[] = []): Promise<ConsumerApp> {
  const npm = (args: string[], cwd: string) => run('npm', args, { cwd, maxBuffer: 16 * 1024 * 1024 });
  const work = await mkdtemp(path.join(tmpdir(), 'arvo-postgres-consumer-'));
  const tarball = await whileHoldingBuildLock(async () => {
    await npm(['run', 'build'], root);
    const packed = JSON.parse((await npm(['pack', '--json', '--pack-destination', work], root)).stdout);
    return path.join(work, packed[0].filename as string);
  });
  const dir = path.join(work, 'app');
  await mkdir(dir);
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  await npm(
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
      ...[...CONSUMER_PACKAGES, 'typescript', ...extraPackages].map((name) => `${name}@${versionOf(name)}`),
    ],
    dir,
  );
  const tsc = path.join(dir, 'node_modules', 'typescript', 'bin', 'tsc');
  return {
    dir,
    npm,
    async tsc(args) {
      await run(process.execPath, [tsc, ...args], { cwd: dir, maxBuffer: 16 * 1024 * 1024 }).catch(
        (error: { stdout?: string; stderr?: string }) => {
          throw new Error(`tsc failed:\n${error.stdout ?? ''}${error.stderr ?? ''}`);
        },
      );
    },
    remove: () => rm(work, { recursive: true, force: true }),
  };
}

/** Lock file of {@link whileHoldingBuildLock}: it holds the pid of the test process building. */
const BUILD_LOCK = path.join(root, 'node_modules', '.arvo-postgres-build.lock');

/** Runs `build` while no other test process builds or packs this repository. */
async function whileHoldingBuildLock<T>(build: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      const lock = await open(BUILD_LOCK, 'wx');
      await lock.writeFile(String(process.pid));
      await lock.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // A lock left by a test process that died is taken over.
      const holder = Number(await readFile(BUILD_LOCK, 'utf8').catch(() => ''));
      if (holder && !isAlive(holder)) await rm(BUILD_LOCK, { force: true });
      else await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  try {
    return await build();
  } finally {
    await rm(BUILD_LOCK, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
