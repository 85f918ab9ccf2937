import type pg from 'pg';

/** The statements the clients of a pool sent since the last `reset()`. */
export interface StatementLog {
  /** Text of each statement, in the order sent. */
  readonly texts: readonly string[];
  /** How many were sent: one `query` call is one round trip. */
  readonly count: number;
  reset(): void;
}

const QUEUE_CONTROL_POLL = /^SELECT queue, paused, default_priority FROM /;

/**
 * Records the statements every client of `pool` sends, however it is reached (`pool.query` checks
 * out a client and calls its `query`; `pool.connect()` hands one out). Call it before the pool opens
 * its first connection.
 */
export function recordStatements(pool: pg.Pool): StatementLog {
  let texts: string[] = [];
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const [config] = args;
      const text = typeof config === 'string' ? config : String((config as { text?: unknown }).text);
      // The broker's once-a-second queue-control poll shares the pool but belongs to no job.
      if (!QUEUE_CONTROL_POLL.test(text)) texts.push(text);
      return query(...args);
    };
  });
  return {
    get texts() {
      return texts;
    },
    get count() {
      return texts.length;
    },
    reset() {
      texts = [];
    },
  };
}

/** Each statement as a word: BEGIN/COMMIT, the history's insert, a dead-lettering, pg-boss's insert or complete. */
export function statementShapes(texts: readonly string[]): string[] {
  return texts.map((text) =>
    /^(BEGIN|COMMIT)/.test(text)
      ? text.trim()
      : /arvo_event_history/.test(text)
        ? 'history'
        : /deleted_jobs/.test(text)
          ? 'dead-letter'
          : /INSERT INTO/i.test(text)
            ? 'insert'
            : /completed/i.test(text)
              ? 'complete'
              : text.slice(0, 60),
  );
}
