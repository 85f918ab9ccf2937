import { randomBytes } from 'node:crypto';
import pg from 'pg';
import format from 'pg-format';
import { sharedPostgresServer } from './postgres-server';

/** An isolated database for one test file. */
export interface TestDatabase {
  /** Connection string of the new database (superuser). */
  url: string;
  /** Name of the new database. */
  name: string;
  /** Drops the database, terminating leftover connections, then the roles created for it. */
  drop(): Promise<void>;
}

/**
 * A pool for a test's own queries. It has an `error` listener: node-postgres emits `error` on the
 * pool when an idle client's connection dies (a server restart, `DROP DATABASE … WITH (FORCE)` at the
 * end of a test), and an unhandled `error` event would crash the test process.
 */
export function testPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => {});
  return pool;
}

/** Runs one statement on the server's `postgres` database as the superuser. */
async function onServer(statement: string): Promise<void> {
  const server = await sharedPostgresServer();
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Roles to drop with each database (see {@link createTestRole}). */
const rolesOf = new WeakMap<TestDatabase, string[]>();

/**
 * Creates a fresh database on the shared server, so test files can run in parallel without
 * seeing each other's tables or queues.
 */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const server = await sharedPostgresServer();
  const name = `t_${label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .slice(0, 40)}_${randomBytes(4).toString('hex')}`;
  await onServer(format('CREATE DATABASE %I', name));
  const db: TestDatabase = {
    url: withDatabase(server.url, name),
    name,
    async drop() {
      await onServer(format('DROP DATABASE IF EXISTS %I WITH (FORCE)', name));
      // A role can only be dropped once the databases it owns or uses are gone.
      for (const role of rolesOf.get(db) ?? []) await onServer(format('DROP ROLE IF EXISTS %I', role));
    },
  };
  rolesOf.set(db, []);
  return db;
}

/**
 * Creates a login role for tests that must not connect as the superuser (least privilege, secrets
 * in connection strings) and returns a connection string to `db` as that role; `db.drop()` drops
 * the role too. Role names are cluster-wide: give each test file its own.
 */
export async function createTestRole(
  db: TestDatabase,
  role: { name: string; password: string; superuser?: boolean },
): Promise<string> {
  await onServer(
    format(
      'CREATE ROLE %I LOGIN %s PASSWORD %L',
      role.name,
      role.superuser ? 'SUPERUSER' : '',
      role.password,
    ),
  );
  rolesOf.get(db)?.push(role.name);
  const url = new URL(db.url);
  url.username = role.name;
  url.password = role.password;
  return url.toString();
}
