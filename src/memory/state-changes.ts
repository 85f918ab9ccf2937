/** Changes this process made to one state table, counted (see {@link stateChanges}). */
export interface StateChanges {
  count: number;
}

const byTable = new Map<string, StateChanges>();

/**
 * The change count of the state table `table` of database `databaseId`, shared by every memory of
 * this process on that table. A memory counts each statement that changes rows of it (write,
 * cleanup, sweep) when it returns and again when the transaction it ran in settles; a record
 * prefetched by `lock` is served only while the count is what it was before the lock was sent.
 */
export function stateChanges(databaseId: string, table: string): StateChanges {
  const key = `${databaseId} ${table}`;
  let changes = byTable.get(key);
  if (!changes) {
    changes = { count: 0 };
    byTable.set(key, changes);
  }
  return changes;
}
