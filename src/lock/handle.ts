/** A lock this process holds. Pass it back to `release`/`renew`; it is worthless once the TTL passed. */
export interface LockHandle {
  key: string;
  /** Random token of this acquisition: only its holder can release or renew the lock. */
  owner: string;
  /**
   * Grows with every acquisition of the key (and across keys). Pass it to the resource you protect
   * and reject writes carrying a smaller token: a holder whose lock expired cannot overwrite the work
   * of the one that took over.
   */
  fencingToken: bigint;
  /** When the lock expires, by the database clock. */
  expiresAt: Date;
}

/** The lock columns a statement built on `LockStatements.acquire` returns. */
export interface LockRow {
  key: string;
  owner: string;
  fencing_token: string;
  expires_at: Date;
}

/** The handle of a lock row as the lock statements return it. */
export function lockHandleFromRow(row: LockRow): LockHandle {
  return {
    key: row.key,
    owner: row.owner,
    fencingToken: BigInt(row.fencing_token),
    expiresAt: row.expires_at,
  };
}
