import { ArvoOrchestrationSubject } from 'arvo-core';
import { ArvoPostgresError } from '../shared/errors';
import { oversizedIndexedText, oversizedIndexedTextReason } from '../shared/indexed-text';
import { jsonUnstorableCharacter } from '../shared/json';
import { requireText } from '../shared/options';
import { describeError } from '../shared/redact';

/** A workflow record checked for storing: its JSON and the columns pulled out of it. */
export interface RecordColumns {
  json: string;
  status: string | null;
  executionStatus: string | null;
  parentSubject: string | null;
  initiator: string | null;
  source: string | null;
}

/** `value` as a workflow record (`name`: the argument), else an `INVALID_ARGUMENT` error. */
export function requireRecord(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArvoPostgresError(
      'INVALID_ARGUMENT',
      `\`${name}\` must be a plain object (the workflow record)`,
    );
  }
  return value as Record<string, unknown>;
}

/** `subject` cut to 40 characters, for messages. */
export function shortSubject(subject: string): string {
  return subject.length > 40 ? `${subject.slice(0, 40)}…` : subject;
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/**
 * A `write` metadata value as a string: the string itself, or the `value` of an arvo 3 materialized
 * value once it is resolved (`{ value: 'com.my.client', … }`); `null` for a pending one or anything else.
 */
function metadataString(value: unknown): string | null {
  if (typeof value === 'object' && value !== null)
    return optionalString((value as { value?: unknown }).value);
  return optionalString(value);
}

/** The orchestrator named in an orchestration subject, or `null` for any other subject. */
export function orchestratorOf(subject: string): string | null {
  try {
    return ArvoOrchestrationSubject.parse(subject).orchestrator.name;
  } catch {
    return null;
  }
}

/**
 * The record `data` of workflow `id` as it is stored, with `metadata`'s `initiator` and `source`;
 * an `INVALID_ARGUMENT` error for anything PostgreSQL cannot store or index, instead of a driver
 * error that looks retryable.
 */
export function recordColumns(id: string, data: Record<string, unknown>, metadata: unknown): RecordColumns {
  const meta = typeof metadata === 'object' && metadata !== null ? (metadata as Record<string, unknown>) : {};
  let json: string;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    // A BigInt or a cycle can never be stored: say so instead of a TypeError that looks retryable.
    throw new ArvoPostgresError(
      'INVALID_ARGUMENT',
      `Cannot write workflow ${shortSubject(id)}: the record is not JSON-serializable (${describeError(error).message})`,
    );
  }
  const unstorable = jsonUnstorableCharacter(json);
  if (unstorable !== null) {
    // A clear error instead of the driver's 22P02 ("unsupported Unicode escape sequence").
    throw new ArvoPostgresError(
      'INVALID_ARGUMENT',
      `Cannot write workflow ${shortSubject(id)}: the record contains ${unstorable}, which PostgreSQL cannot store`,
    );
  }
  const status = optionalString(data.status);
  const executionStatus = optionalString(data.executionStatus);
  const initiator = metadataString(meta.initiator);
  const source = metadataString(meta.source);
  const parentSubject = optionalString(data.parentSubject);
  // Both are btree keys (`parent_subject`, `(status, updated_at)`): refused by size, not by 54000.
  if (parentSubject !== null) requireText(parentSubject, "The record's parentSubject", 'INVALID_ARGUMENT');
  const statusBytes = status === null ? null : oversizedIndexedText(status);
  if (statusBytes !== null) {
    throw new ArvoPostgresError(
      'INVALID_ARGUMENT',
      `Cannot write workflow ${shortSubject(id)}: the record's status ${oversizedIndexedTextReason(statusBytes)}`,
    );
  }
  return { json, status, executionStatus, parentSubject, initiator, source };
}
