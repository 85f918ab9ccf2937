import { randomBytes } from 'node:crypto';
import pg from 'pg';
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
