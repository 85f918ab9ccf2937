import { readFileSync } from 'node:fs';
import pg from 'pg';
import { InvalidOptionError } from './errors';
import { type Logger, writeLog } from './logger';
import { expectObject, integerOption, MAX_TIMER_MS, stringOption } from './options';
import { redactSecrets } from './redact';

/**
 * How to reach PostgreSQL. Give exactly one of: `pool` (an existing `pg.Pool`, never closed by this
 * library), `connectionString`, or discrete `host`/`port`/`user`/`password`/`database` settings.
 */
export interface ConnectionOptions {
  /** An existing pool to use. The library never ends a pool it did not create. */
  pool?: pg.Pool;
  /**
   * `postgres://user:password@host:port/database?sslmode=...`. TLS may be set here with the `ssl*`
   * parameters node-postgres reads (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `ssl`,
   * `sslnegotiation`); the files named by `sslrootcert`, `sslcert` and `sslkey` must be readable
   * when the options are validated.
   */
  connectionString?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /**
   * TLS settings passed to node-postgres (`true`, or `{ ca, rejectUnauthorized, ... }`). Not together
   * with an `ssl*` parameter in `connectionString`: node-postgres would let the string's settings
   * replace these without a word (`?sslmode=disable` drops `{ ca }` and connects in plain text), so
   * that combination is refused with an {@link InvalidOptionError}. Give TLS in one place.
   */
  ssl?: pg.ConnectionConfig['ssl'];
  /** Maximum pool size. Default 10. Ignored with `pool`. */
  max?: number;
  /** Idle connection lifetime in ms. Default 10000. Ignored with `pool`. */
  idleTimeoutMillis?: number;
  /** Time to wait for a connection in ms (`0` = forever). Default 10000. Ignored with `pool`. */
  connectionTimeoutMillis?: number;
  /** Server-side `statement_timeout` for every statement, in ms (`0` = none). Default 30000. Ignored with `pool`. */
  statementTimeoutMillis?: number;
  /** `application_name` shown in `pg_stat_activity`. Default `arvo-postgres`. Ignored with `pool`. */
  applicationName?: string;
}

/** The option keys of {@link ConnectionOptions}, for `expectKnownKeys`. */
export const CONNECTION_OPTION_KEYS = [
  'pool',
  'connectionString',
  'host',
  'port',
  'user',
  'password',
  'database',
  'ssl',
  'max',
  'idleTimeoutMillis',
  'connectionTimeoutMillis',
  'statementTimeoutMillis',
  'applicationName',
] as const;

/** Validated connection settings. */
export interface ResolvedConnection {
  /** An existing pool, when one was given. */
  pool?: pg.Pool;
  /** node-postgres pool configuration, when the library creates the pool. */
  config?: pg.PoolConfig;
}

function isPool(value: unknown): value is pg.Pool {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as pg.Pool).connect === 'function' &&
    typeof (value as pg.Pool).query === 'function' &&
    typeof (value as pg.Pool).end === 'function'
  );
}

/** Connection-string parameters naming a file node-postgres reads when it connects. */
const TLS_FILE_PARAMETERS = ['sslrootcert', 'sslcert', 'sslkey'] as const;

/**
 * Checks the TLS parameters of a connection string: none may sit beside an `ssl` option (node-postgres
 * would silently prefer them), and each file they name must be readable now, rather than every
 * connection attempt failing later with a bare `ENOENT`.
 */
function checkTlsParameters(url: URL, sslOptionGiven: boolean, at: (key: string) => string): void {
  const tlsParameters = [...new Set(url.searchParams.keys())].filter((key) => key.startsWith('ssl'));
  if (sslOptionGiven && tlsParameters.length > 0) {
    throw new InvalidOptionError(
      at('ssl'),
      `conflicts with ${tlsParameters.join(', ')} in \`${at('connectionString')}\`, which node-postgres would apply instead; give TLS settings either as \`${at('ssl')}\` or in the connection string`,
    );
  }
  for (const parameter of TLS_FILE_PARAMETERS) {
    for (const file of url.searchParams.getAll(parameter)) {
      // node-postgres skips an empty value, so it names no file.
      if (file === '') continue;
      try {
        readFileSync(file);
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        throw new InvalidOptionError(
          at('connectionString'),
          redactSecrets(`${parameter} names a file that cannot be read: ${JSON.stringify(file)} (${reason})`),
        );
      }
    }
  }
}

/** Pool timeouts: they feed Node timers and `statement_timeout`. */
const TIMEOUT_RANGE = { min: 0, max: MAX_TIMER_MS };

/**
 * Validates the connection part of an options object. `prefix` is the dotted path used in error
 * messages (`''` for top-level options).
 */
export function resolveConnection(options: Record<string, unknown>, prefix = ''): ResolvedConnection {
  const at = (key: string) => (prefix ? `${prefix}.${key}` : key);
  const discrete = ['host', 'port', 'user', 'password', 'database'].filter((k) => options[k] !== undefined);
  const given = [
    options.pool !== undefined,
    options.connectionString !== undefined,
    discrete.length > 0,
  ].filter(Boolean);
  if (given.length !== 1) {
    throw new InvalidOptionError(
      at('connectionString'),
      given.length === 0
        ? 'no connection given: pass one of `connectionString`, `pool`, or `host`/`port`/`user`/`password`/`database`'
        : 'give only one of `connectionString`, `pool`, or discrete `host`/`port`/... settings',
    );
  }
  if (options.pool !== undefined) {
    if (!isPool(options.pool)) throw new InvalidOptionError(at('pool'), 'expected a pg.Pool instance');
    return { pool: options.pool };
  }

  const connectionString = stringOption(options.connectionString, at('connectionString'));
  if (connectionString !== undefined) {
    let url: URL;
    try {
      url = new URL(connectionString);
    } catch {
      throw new InvalidOptionError(
        at('connectionString'),
        'not a valid URL (expected postgres://user:password@host:port/database)',
      );
    }
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
      throw new InvalidOptionError(
        at('connectionString'),
        `unsupported protocol ${JSON.stringify(url.protocol)}; expected postgres:`,
      );
    }
    try {
      decodeURIComponent(url.password);
    } catch {
      throw new InvalidOptionError(at('connectionString'), 'the password is not valid percent-encoding');
    }
    checkTlsParameters(url, options.ssl !== undefined, at);
  }
  const password = stringOption(options.password, at('password'));
  if (options.ssl !== undefined && typeof options.ssl !== 'boolean') expectObject(options.ssl, at('ssl'));

  const config: pg.PoolConfig = {
    ...(connectionString !== undefined ? { connectionString } : {}),
    ...(options.host !== undefined ? { host: stringOption(options.host, at('host')) } : {}),
    ...(options.port !== undefined
      ? { port: integerOption(options.port, at('port'), { min: 1, max: 65535 }, 5432) }
      : {}),
    ...(options.user !== undefined ? { user: stringOption(options.user, at('user')) } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(options.database !== undefined ? { database: stringOption(options.database, at('database')) } : {}),
    ...(options.ssl !== undefined ? { ssl: options.ssl as pg.ConnectionConfig['ssl'] } : {}),
    max: integerOption(options.max, at('max'), { min: 1, max: 1000 }, 10),
    idleTimeoutMillis: integerOption(
      options.idleTimeoutMillis,
      at('idleTimeoutMillis'),
      TIMEOUT_RANGE,
      10_000,
    ),
    connectionTimeoutMillis: integerOption(
      options.connectionTimeoutMillis,
      at('connectionTimeoutMillis'),
      TIMEOUT_RANGE,
      10_000,
    ),
    statement_timeout: integerOption(
      options.statementTimeoutMillis,
      at('statementTimeoutMillis'),
      TIMEOUT_RANGE,
      30_000,
    ),
    application_name: stringOption(options.applicationName, at('applicationName'), 'arvo-postgres'),
  };
  return { config };
}

/** A pool together with whether this library owns it (and so must end it on close). */
export interface ManagedPool {
  pool: pg.Pool;
  owned: boolean;
}

/**
 * Returns the given pool, or creates one. A created pool gets an `error` listener: without one an
 * idle client losing its connection (e.g. a database restart) would crash the process.
 */
export function openPool(connection: ResolvedConnection, logger: Logger): ManagedPool {
  if (connection.pool) return { pool: connection.pool, owned: false };
  const pool = new pg.Pool(connection.config);
  pool.on('error', (error) => {
    writeLog(
      logger,
      'warn',
      `arvo-postgres: idle database connection failed: ${redactSecrets(error.message)}`,
    );
  });
  return { pool, owned: true };
}

/** Ends `managed.pool` when this library created it. */
export async function closePool(managed: ManagedPool): Promise<void> {
  if (managed.owned) await managed.pool.end();
}
