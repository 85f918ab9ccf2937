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
  /** Drops the database, terminating leftover connections. */
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

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
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    url: withDatabase(server.url, name),
    name,
    async drop() {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A login role of the shared server and a connection string to a test database as that role. */
export interface TestRole {
  /** Connection string of `db` as this role. */
  url: string;
  /** Drops the role (after the databases it owns or uses were dropped). */
  drop(): Promise<void>;
}

/**
 * Creates a login role for tests that must not connect as the superuser (least privilege, secrets
 * in connection strings). Role names are cluster-wide: give each test file its own.
 */
export async function createTestRole(
  db: TestDatabase,
  role: { name: string; password: string; superuser?: boolean },
): Promise<TestRole> {
  const server = await sharedPostgresServer();
  const run = async (statement: string) => {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await run(
    format(
      'CREATE ROLE %I LOGIN %s PASSWORD %L',
      role.name,
      role.superuser ? 'SUPERUSER' : '',
      role.password,
    ),
  );
  const url = new URL(db.url);
  url.username = role.name;
  url.password = role.password;
  return { url: url.toString(), drop: () => run(format('DROP ROLE IF EXISTS %I', role.name)) };
}
