/**
 * An `@arvo-tools/postgres` 1.2.2 installation, for migration tests: its tables with its exact DDL
 * (`/work/shared/docs/prior-art.md`), and a memory that writes them as it does (version counter, one
 * hierarchy row per record, naive `TIMESTAMP`s from `now()`, lock upsert that takes over an expired
 * row). Written from its documented behaviour, not its code.
 */
import type pg from 'pg';
import type { IMachineMemory } from '../../src/memory/index';

/** Its default table names. */
export const ARVO_TOOLS_TABLES = {
  state: 'arvopg_mm_state',
  lock: 'arvopg_mm_lock',
  hierarchy: 'arvopg_mm_hierarchy',
} as const;

/** Its DDL, verbatim. */
export const ARVO_TOOLS_DDL = [
  `CREATE TABLE arvopg_mm_state (subject VARCHAR(255) PRIMARY KEY, data JSONB NOT NULL, version
  INTEGER NOT NULL DEFAULT 1, execution_status VARCHAR(255) NOT NULL, parent_subject VARCHAR(255) NULL,
  initiator VARCHAR(255) NULL, source VARCHAR(255) NOT NULL, created_at TIMESTAMP DEFAULT now(), updated_at
  TIMESTAMP DEFAULT now())`,
  `CREATE TABLE arvopg_mm_lock (subject VARCHAR(255) PRIMARY KEY, locked_at TIMESTAMP NOT NULL, expires_at
  TIMESTAMP NOT NULL, created_at TIMESTAMP DEFAULT now())`,
  `CREATE TABLE arvopg_mm_hierarchy (subject VARCHAR(255) PRIMARY KEY,
  parent_subject VARCHAR(255) NULL, root_subject VARCHAR(255) NOT NULL, created_at TIMESTAMP DEFAULT now())`,
];

export async function createArvoToolsTables(pool: pg.Pool): Promise<void> {
  for (const statement of ARVO_TOOLS_DDL) await pool.query(statement);
}

/**
 * A memory over the prior-art tables behaving as the prior art does: `write` with `prevData === null`
 * inserts the record and its hierarchy row, otherwise `UPDATE … WHERE version = prev`; `lock` is one
 * upsert taking over an expired row (`ttlMs` 120 s by default).
 */
export function arvoToolsMemory(pool: pg.Pool, ttlMs = 120_000): IMachineMemory<Record<string, any>> {
  const versions = new WeakMap<object, number>();
  return {
    async read(id) {
      const { rows } = await pool.query('SELECT data, version FROM arvopg_mm_state WHERE subject = $1', [id]);
      if (!rows[0]) return null;
      versions.set(rows[0].data, rows[0].version);
      return rows[0].data;
    },
    async write(id, data, prevData, metadata) {
      const { source, initiator } = (metadata ?? {}) as { source?: string; initiator?: string };
      const executionStatus = data.executionStatus ?? 'unknown';
      if (prevData === null) {
        const parent = data.parentSubject ?? null;
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query(
            `INSERT INTO arvopg_mm_state (subject, data, version, execution_status, parent_subject, initiator, source, created_at, updated_at)
             VALUES ($1, $2, 1, $3, $4, $5, $6, NOW(), NOW())`,
            [id, JSON.stringify(data), executionStatus, parent, initiator ?? null, source],
          );
          const root = parent
            ? ((
                await client.query('SELECT root_subject FROM arvopg_mm_hierarchy WHERE subject = $1', [
                  parent,
                ])
              ).rows[0]?.root_subject ?? parent)
            : id;
          await client.query(
            'INSERT INTO arvopg_mm_hierarchy (subject, parent_subject, root_subject, created_at) VALUES ($1, $2, $3, NOW())',
            [id, parent, root],
          );
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        } finally {
          client.release();
        }
      } else {
        const { rowCount } = await pool.query(
          `UPDATE arvopg_mm_state SET data = $2, version = version + 1, execution_status = $3, updated_at = NOW()
           WHERE subject = $1 AND version = $4`,
          [id, JSON.stringify(data), executionStatus, versions.get(prevData)],
        );
        if (rowCount === 0) throw new Error(`version mismatch for ${id}`);
      }
    },
    async lock(id) {
      const { rowCount } = await pool.query(
        `INSERT INTO arvopg_mm_lock (subject, locked_at, expires_at, created_at)
         VALUES ($1, NOW(), NOW() + $2::bigint * interval '1 millisecond', NOW())
         ON CONFLICT (subject) DO UPDATE SET locked_at = NOW(), expires_at = EXCLUDED.expires_at
         WHERE arvopg_mm_lock.expires_at < NOW()`,
        [id, ttlMs],
      );
      return rowCount === 1;
    },
    async unlock(id) {
      await pool.query('DELETE FROM arvopg_mm_lock WHERE subject = $1', [id]);
      return true;
    },
  };
}
