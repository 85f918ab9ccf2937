import { pgBossSchemaSql, withPgBoss } from '../../broker/pgboss';
import { brokerMigrationSql, migrateBrokerTables } from '../../broker/schema';
import { historyMigrationSql, migrateHistoryTable } from '../../history/schema';
import { type ArvoToolsMigrationReport, migrateFromArvoTools } from '../../memory/arvo-tools-migration';
import { connectPostgresMachineMemory } from '../../memory/memory';
import { memoryMigrationSql } from '../../memory/schema';
import { silentLogger } from '../../shared/logger';
import { connectionStringOf, defineCommand, EXIT, memoryTablesOf, UsageError, withPool } from '../common';

export const migrateCommand = defineCommand({
  name: 'migrate',
  summary: "create or migrate the memory/lock tables and pg-boss's schema (or print the DDL)",
  usage: `Usage: arvo-postgres migrate [--print-sql] [--broker-only]
       arvo-postgres migrate --from-arvo-tools [--dry-run] [--from-schema s] [--time-zone z]

Creates what is missing: the machine memory's workflow state, lock and event history tables with their indexes
(every layout version, recorded in <schema>.arvo_postgres_migrations) and pg-boss's schema (installed or
migrated to the version pg-boss 12.38 needs), and the broker's queue control table beside it.
Idempotent; safe while brokers are running.

  --print-sql     print the DDL instead (for a DBA to review and apply); needs no database
  --broker-only   pg-boss's schema (in --pgboss-schema), the queue control table and the event history
                  (in --schema) only: a deployment without the machine memory

With --from-arvo-tools, also copies an @arvo-tools/postgres installation's workflow state (its state
and hierarchy tables) into the state table, in one transaction: versions, parents and roots kept,
records already copied left alone (run it again at will). Refused while a lock of the old
installation is live: stop its workers first. Its TIMESTAMP columns are read in --time-zone.

  --from-arvo-tools             copy the @arvo-tools/postgres workflow state
  --dry-run                     report what would be copied; change nothing (exit 1 if live locks)
  --from-schema <name>          schema of its tables (default public)
  --from-state-table <name>     its state table (default arvopg_mm_state)
  --from-lock-table <name>      its lock table (default arvopg_mm_lock)
  --from-hierarchy-table <name> its hierarchy table (default arvopg_mm_hierarchy)
  --time-zone <zone>            zone of its naive timestamps (default: the database's TimeZone)`,
  options: {
    'print-sql': { type: 'boolean', default: false },
    'broker-only': { type: 'boolean', default: false },
    'from-arvo-tools': { type: 'boolean', default: false },
    'dry-run': { type: 'boolean', default: false },
    'from-schema': { type: 'string' },
    'from-state-table': { type: 'string' },
    'from-lock-table': { type: 'string' },
    'from-hierarchy-table': { type: 'string' },
    'time-zone': { type: 'string' },
  },
  async run({ values, names }, io) {
    const tables = memoryTablesOf(names);
    const memory = !values['broker-only'];
    if (!memory && values['from-arvo-tools']) throw new UsageError('--broker-only copies no workflow state');
    if (values['print-sql']) {
      io.stdout(
        [
          ...(memory
            ? [
                `-- arvo-postgres machine memory: ${names.schema}.${names.stateTable}, ${names.schema}.${names.lockTable}, ${names.schema}.${names.historyTable}`,
                memoryMigrationSql({ schema: names.schema, tables }),
              ]
            : [
                // The memory migrates the history with its tables; a broker without it writes one too.
                `-- arvo-postgres event history: ${names.schema}.${names.historyTable}`,
                historyMigrationSql(names.schema, names.historyTable),
              ]),
          `-- pg-boss 12.38 schema ${names.pgBossSchema}`,
          `${pgBossSchemaSql({ schema: names.pgBossSchema }).trim()}\n`,
          `-- arvo-postgres broker: ${names.pgBossSchema}.arvo_queue_control`,
          brokerMigrationSql({ schema: names.pgBossSchema }),
        ].join('\n'),
      );
      return EXIT.ok;
    }
    const url = connectionStringOf(values, io);
    if (values['from-arvo-tools']) {
      const report = await migrateFromArvoTools({
        connectionString: url,
        from: {
          schema: values['from-schema'],
          tables: {
            state: values['from-state-table'],
            lock: values['from-lock-table'],
            hierarchy: values['from-hierarchy-table'],
          },
        },
        schema: names.schema,
        tables,
        timeZone: values['time-zone'],
        dryRun: values['dry-run'],
      });
      io.stdout(describeCopy(report));
      if (report.dryRun) return report.liveLocks > 0 ? EXIT.problem : EXIT.ok;
    } else if (values['dry-run'] || values['time-zone'] !== undefined) {
      throw new UsageError('--dry-run and --time-zone go with --from-arvo-tools');
    }
    if (memory) {
      await withPool(url, async (pool) => {
        const created = await connectPostgresMachineMemory({
          pool,
          schema: names.schema,
          tables,
          migrate: 'create_if_not_exists',
          logger: silentLogger,
        });
        await created.close();
      });
      io.stdout(
        `memory: ${names.schema}.${names.stateTable} and ${names.schema}.${names.lockTable} ready (layout version 2)\n`,
      );
    } else {
      const version = await withPool(url, (pool) =>
        migrateHistoryTable(pool, names.schema, names.historyTable),
      );
      io.stdout(`history: ${names.schema}.${names.historyTable} ready (layout version ${version})\n`);
    }
    const version = await withPgBoss(url, names.pgBossSchema, true, (boss) => boss.schemaVersion());
    io.stdout(`pg-boss: schema ${names.pgBossSchema} at version ${version}\n`);
    await withPool(url, (pool) => migrateBrokerTables(pool, names.pgBossSchema));
    io.stdout(`broker: ${names.pgBossSchema}.arvo_queue_control ready (layout version 1)\n`);
    return EXIT.ok;
  },
});

/** The lines `migrate --from-arvo-tools` prints about the copy. */
function describeCopy(report: ArvoToolsMigrationReport): string {
  const lines = [
    `@arvo-tools/postgres: ${report.from.state} holds ${report.workflows} workflow record${report.workflows === 1 ? '' : 's'} (${report.roots} root, ${report.children} child), hierarchy ${report.from.hierarchy}; timestamps read in ${report.timeZone}`,
    report.dryRun
      ? `dry run: ${report.copied} would be copied to ${report.to}, ${report.alreadyPresent} already there; nothing changed`
      : `copied ${report.copied} to ${report.to}, ${report.alreadyPresent} already there`,
  ];
  if (report.liveLocks > 0) {
    lines.push(
      `${report.liveLocks} lock${report.liveLocks === 1 ? '' : 's'} in ${report.from.lock} still live (the last expires at ${report.lastLockExpiry?.toISOString()}): the copy is refused until the old workers are stopped and their locks expired`,
    );
  }
  return `${lines.join('\n')}\n`;
}
