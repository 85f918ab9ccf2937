import type pg from 'pg';
import { inTransaction } from '../shared/transaction';
import type { DeadLetterAlerts } from './dead-letter-alerts';
import type { JobFailureRecord } from './dead-letters';
import { deadLetterReportedSql, unreportedDeadLettersSql } from './sql';

/**
 * The key the failure policy adds to a dead letter's record when it leaves the settle to pg-boss
 * (its own could not be written): no process reported it, so the sweep below does.
 */
export const UNREPORTED_MARK = 'unreported';

/** Dead letters one sweep transaction claims at most; the sweep repeats while batches come back full. */
const REPORT_BATCH_SIZE = 500;

/** pg-boss's outputs for an attempt whose claim expired (worker crashed, blocked, or too slow). */
const PG_BOSS_TIMEOUTS = new Set(['job timed out', 'job heartbeat timeout']);

interface UnreportedDeadLetter {
  name: string;
  id: string;
  source_name: string | null;
  source_retry_count: number | null;
  source_output: unknown;
  created_on: Date;
  event_id: string | null;
  event_type: string | null;
}

/** `record` as the failure policy hands it to pg-boss to store, marked for the sweep. */
export function markedUnreported(record: JobFailureRecord): JobFailureRecord {
  return { ...record, [UNREPORTED_MARK]: true } as JobFailureRecord;
}

/**
 * Reports, once across every process, the dead letters no process reported (see
 * `unreportedDeadLettersSql`): each is claimed and given the broker's failure record in one
 * transaction, and `alerts`' listeners hear of it after the commit. Runs only while this process has
 * a listener, so that with none anywhere the dead letters wait for one. Returns how many it reported.
 */
export async function reportUnreportedDeadLetters(
  pool: pg.Pool,
  schema: string,
  deadLetterQueues: string[],
  alerts: DeadLetterAlerts,
): Promise<number> {
  if (!alerts.listening) return 0;
  let reported = 0;
  for (;;) {
    const records = await claimBatch(pool, schema, deadLetterQueues);
    alerts.reportMadeElsewhere(records);
    reported += records.length;
    if (records.length < REPORT_BATCH_SIZE) return reported;
  }
}

async function claimBatch(
  pool: pg.Pool,
  schema: string,
  deadLetterQueues: string[],
): Promise<JobFailureRecord[]> {
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query<UnreportedDeadLetter>(unreportedDeadLettersSql(schema), [
      deadLetterQueues,
      REPORT_BATCH_SIZE,
      UNREPORTED_MARK,
    ]);
    const claimed = rows.map((row) => ({ name: row.name, id: row.id, record: failureRecord(row) }));
    if (claimed.length > 0) await client.query(deadLetterReportedSql(schema), [JSON.stringify(claimed)]);
    return claimed.map((letter) => letter.record);
  });
}

/** The broker's record of `row`: its own, unmarked, or one made from what pg-boss stored. */
function failureRecord(row: UnreportedDeadLetter): JobFailureRecord {
  const output = row.source_output as Record<string, unknown> | null;
  if (output && UNREPORTED_MARK in output) {
    const { [UNREPORTED_MARK]: _, ...record } = output;
    return record as unknown as JobFailureRecord;
  }
  const value = output?.value as { message?: unknown } | undefined;
  const message = typeof value?.message === 'string' ? value.message : JSON.stringify(output);
  return {
    kind: PG_BOSS_TIMEOUTS.has(message) ? 'timeout' : 'infrastructure',
    queue: row.source_name ?? row.name,
    attempt: (row.source_retry_count ?? 0) + 1,
    eventId: row.event_id,
    eventType: row.event_type,
    error: { name: 'Error', message: `pg-boss failed the attempt: ${message}` },
    failedAt: row.created_on.toISOString(),
    history: [],
  };
}
