/**
 * Something a suite opened on its test database, or the database itself: a broker (`stop`), a
 * memory or lock (`close`), a pg pool or client (`end`), a test database (`drop`); undefined
 * when the suite's setup failed before opening it.
 */
type Opened =
  | { stop(options: { timeoutMs: number }): Promise<void> }
  | { close(): Promise<void> }
  | { end(): Promise<void> }
  | { drop(): Promise<void> }
  | undefined;

/**
 * Closes what a suite opened, one after the other in the order given (what uses the database first,
 * the database last), skipping what was never opened; a broker gets 2 s to finish handlers in flight.
 */
export async function closeAll(...opened: Opened[]): Promise<void> {
  for (const thing of opened) {
    if (thing === undefined) continue;
    if ('stop' in thing) await thing.stop({ timeoutMs: 2000 });
    else if ('close' in thing) await thing.close();
    else if ('end' in thing) await thing.end();
    else await thing.drop();
  }
}
