import { getConstructionPlans } from 'pg-boss';
import { connectPostgresMachineMemory, memoryMigrationSql } from '../../memory/memory';
import { silentLogger } from '../../shared/logger';
import {
  type CliIo,
  CONNECTION_HELP,
  type Command,
  connectionStringOf,
  EXIT,
  parseCommand,
  withPool,
} from '../common';
import { withPgBoss } from '../pgboss';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: "create or migrate the memory/lock tables and pg-boss's schema (or print the DDL)",
  usage: `Usage: arvo-postgres migrate [--print-sql]

Creates what is missing: the machine memory's workflow state and lock tables with their indexes
(layout version 1, recorded in <schema>.arvo_postgres_migrations) and pg-boss's schema (installed or
migrated to the version pg-boss 12.38 needs). Idempotent; safe while brokers are running.

  --print-sql   print the DDL instead (for a DBA to review and apply); needs no database

${CONNECTION_HELP}`,
  async run(args: string[], io: CliIo): Promise<number> {
    const parsed = parseCommand(
      this,
      args,
      {
        'print-sql': { type: 'boolean', default: false },
      },
      io,
    );
    if (!parsed) return EXIT.ok;
    const { values, names } = parsed;

    const tables = { state: names.stateTable, lock: names.lockTable };
    if (values['print-sql']) {
      io.stdout(
        [
          `-- arvo-postgres machine memory: ${names.schema}.${names.stateTable}, ${names.schema}.${names.lockTable}`,
          memoryMigrationSql({ schema: names.schema, tables }),
          `-- pg-boss 12.38 schema ${names.pgBossSchema}`,
          `${getConstructionPlans(names.pgBossSchema).trim()}\n`,
        ].join('\n'),
      );
      return EXIT.ok;
    }
    const url = connectionStringOf(values, io);
    await withPool(url, async (pool) => {
      const memory = await connectPostgresMachineMemory({
        pool,
        schema: names.schema,
        tables,
        migrate: 'create_if_not_exists',
        logger: silentLogger,
      });
      await memory.close();
    });
    io.stdout(
      `memory: ${names.schema}.${names.stateTable} and ${names.schema}.${names.lockTable} ready (layout version 1)\n`,
    );
    const version = await withPgBoss(url, names.pgBossSchema, true, (boss) => boss.schemaVersion());
    io.stdout(`pg-boss: schema ${names.pgBossSchema} at version ${version}\n`);
    return EXIT.ok;
  },
};
