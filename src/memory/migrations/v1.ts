import { qualifiedName, quoteIdentifier } from '../../shared/identifiers';
import { createIndexSql, indexOn, type Migration } from '../../shared/migrations';

/** Table names of a machine memory. */
export interface MemoryTables {
  /** Workflow state, one row per orchestration subject. */
  state: string;
  /** TTL locks, one row per locked subject (layout of `src/lock`). */
  lock: string;
}

/** One expected column of the state table, as `validateTableStructure` checks it. */
export interface ExpectedColumn {
  name: string;
  /** `information_schema.columns.data_type`. */
  type: string;
  nullable: boolean;
}

/** Columns of the state table in layout version 1. */
export const STATE_COLUMNS_V1: readonly ExpectedColumn[] = [
  { name: 'subject', type: 'text', nullable: false },
  { name: 'data', type: 'jsonb', nullable: false },
  { name: 'version', type: 'bigint', nullable: false },
  { name: 'parent_subject', type: 'text', nullable: true },
  { name: 'root_subject', type: 'text', nullable: false },
  { name: 'status', type: 'text', nullable: true },
  { name: 'execution_status', type: 'text', nullable: true },
  { name: 'orchestrator', type: 'text', nullable: true },
  { name: 'initiator', type: 'text', nullable: true },
  { name: 'source', type: 'text', nullable: true },
  { name: 'created_at', type: 'timestamp with time zone', nullable: false },
  { name: 'updated_at', type: 'timestamp with time zone', nullable: false },
];

/** Columns of the lock table in layout version 1 (see `src/lock/migrations/v1.ts`). */
export const LOCK_COLUMNS_V1: readonly ExpectedColumn[] = [
  { name: 'key', type: 'text', nullable: false },
  { name: 'owner', type: 'text', nullable: false },
  { name: 'fencing_token', type: 'bigint', nullable: false },
  { name: 'acquired_at', type: 'timestamp with time zone', nullable: false },
  { name: 'expires_at', type: 'timestamp with time zone', nullable: false },
];

/**
 * State table layout version 1. Subjects are `text` (real ones exceed 300 characters), the record is
 * JSONB with a separate `version` for compare-and-swap, and the columns a sweep or a hierarchy lookup
 * filters on are pulled out of the record and indexed.
 */
export function stateMigrationV1(schema: string, table: string): Migration {
  const name = qualifiedName(schema, table);
  const indexes = [
    indexOn(table, ['root_subject']),
    indexOn(table, ['parent_subject']),
    indexOn(table, ['status', 'updated_at']),
    indexOn(table, ['updated_at']),
  ];
  return {
    version: 1,
    description: `workflow state table ${table}: JSONB record, version, hierarchy and status columns`,
    statements: [
      `CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`,
      `CREATE TABLE IF NOT EXISTS ${name} (
  subject text PRIMARY KEY,
  data jsonb NOT NULL,
  version bigint NOT NULL,
  parent_subject text,
  root_subject text NOT NULL,
  status text,
  execution_status text,
  orchestrator text,
  initiator text,
  source text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
)`,
      ...indexes.map((index) => createIndexSql(schema, index)),
    ],
    indexes,
  };
}
