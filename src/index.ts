/**
 * arvo-postgres: durable PostgreSQL plumbing for Arvo.
 *
 * - `PostgresEventBroker` (pg-boss queues per handler, routing, retries, dead letters, retention)
 * - `PostgresMachineMemory` (workflow state for Arvo orchestrators)
 * - `PostgresLock` (TTL row locks with owner and fencing tokens)
 * - `createDashboard` (the operations web UI as a Node request handler)
 * - `Workflows` (a workflow's tree, dead letters and event history; the list of workflows)
 */
export * from './broker/index';
export * from './dashboard/index';
export * from './history/index';
export * from './lock/index';
export * from './memory/index';
export { ArvoPostgresError, InvalidOptionError, MigrationIndexError } from './shared/errors';
export { MAX_INDEXED_TEXT_BYTES } from './shared/indexed-text';
export { consoleLogger, type Logger, type LogLevel, silentLogger } from './shared/logger';
export type { ConnectionOptions } from './shared/pool';
export { describeError, type ErrorDescription, redactSecrets } from './shared/redact';
