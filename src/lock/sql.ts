import { createHash } from 'node:crypto';
import format from 'pg-format';
import { qualifiedName } from '../shared/identifiers';

/**
 * Every statement of the lock module, built once per lock table. Times are judged by the database
 * clock only (`clock_timestamp()`), never by the clocks of the processes sharing the lock.
 */
export interface LockStatements {
  /**
   * `$1` key, `$2` owner, `$3` ttl in ms. Inserts the lock, or takes over an expired row with a new
   * fencing token; returns no row when a live lock is held by someone else, a row lock or the key's
   * transaction-scoped lock (a broker job's, see {@link jobLockSql}). `acquired_at` and `expires_at`
   * come from one clock reading, so a lock lives exactly its TTL.
   */
  acquire: string;
  /** `$1` key, `$2` owner, `$3` fencing token. Deletes the lock only when both still match. */
  release: string;
  /** `$1` key, `$2` owner, `$3` fencing token, `$4` ttl in ms. Extends a lock that is still held. */
  renew: string;
  /** `$1` key. The live lock on the key, if any. */
  inspect: string;
  /** `$1` batch size. Deletes up to that many expired rows; skips rows being taken over right now. */
  sweepExpired: string;
}

/**
 * SQL condition taking the transaction-scoped advisory lock that stands for the lock on `key` (an
 * SQL text expression) of lock table `name` (qualified), false when another transaction holds it.
 * A broker job holds it until it commits, instead of a lock row (docs/design.md, "Workflow locks
 * inside a job"); `acquire` takes it for its own statement, so the two kinds exclude each other.
 */
export function jobLockSql(name: string, key: string): string {
  const seed = BigInt(`0x${createHash('sha256').update(name).digest('hex').slice(0, 15)}`);
  return `pg_try_advisory_xact_lock(hashtextextended(${key}, ${seed}))`;
}

export function lockStatements(schema: string, table: string): LockStatements {
  const name = qualifiedName(schema, table);
  const returning = 'RETURNING key, owner, fencing_token::text AS fencing_token, expires_at';
  return {
    acquire: `INSERT INTO ${name} AS l (key, owner, acquired_at, expires_at)
SELECT $1::text, $2::text, c.at, c.at + $3::bigint * interval '1 millisecond'
FROM (SELECT clock_timestamp() AS at) c
WHERE ${jobLockSql(name, '$1::text')}
ON CONFLICT (key) DO UPDATE SET
  owner = EXCLUDED.owner,
  fencing_token = nextval(pg_get_serial_sequence(${format.literal(name)}, 'fencing_token')),
  acquired_at = EXCLUDED.acquired_at,
  expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp()
${returning}`,
    release: `DELETE FROM ${name} WHERE key = $1 AND owner = $2 AND fencing_token = $3::bigint`,
    renew: `UPDATE ${name} SET expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond'
WHERE key = $1 AND owner = $2 AND fencing_token = $3::bigint AND expires_at > clock_timestamp()
${returning}`,
    inspect: `SELECT key, owner, fencing_token::text AS fencing_token, expires_at FROM ${name}
WHERE key = $1 AND expires_at > clock_timestamp()`,
    sweepExpired: `DELETE FROM ${name} WHERE key IN (
  SELECT key FROM ${name} WHERE expires_at <= clock_timestamp()
  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
)`,
  };
}
