import { readFileSync } from 'node:fs';
import pg from 'pg';
import { InvalidOptionError } from './errors';
import { type Logger, writeLog } from './logger';
import {
  expectObject,
  integer,
  MAX_TIMER_MS,
  type OptionTable,
  option,
  resolveOptions,
  text,
} from './options';
import { redactSecrets } from './redact';

/**
 * How to reach PostgreSQL. Give exactly one of: `pool` (an existing `pg.Pool`, never closed by this
 * library), `connectionString`, or discrete `host`/`port`/`user`/`password`/`database` settings.
 */
export interface ConnectionOptions {
  /**
   * An existing `pg.Pool`, never closed by the library. Give it an `error` listener, as node-postgres
   * requires, or a failing idle connection crashes the process.
   * @defaultValue —
   */
  pool?: pg.Pool;
  /**
   * `postgres://user:password@host:port/database?sslmode=...`. TLS may be set here with the `ssl*`
   * parameters node-postgres reads (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `ssl`,
   * `sslnegotiation`); the files named by `sslrootcert`, `sslcert` and `sslkey` must be readable
   * when the options are validated.
   * @defaultValue —
   */
  connectionString?: string;
  /**
   * Discrete setting: the server's host.
   * @defaultValue —
   */
  host?: string;
  /**
   * Discrete setting: the server's port.
   * @defaultValue —
   */
  port?: number;
  /**
   * Discrete setting: the user.
   * @defaultValue —
   */
  user?: string;
  /**
   * Discrete setting: the password.
   * @defaultValue —
   */
  password?: string;
  /**
   * Discrete setting: the database.
   * @defaultValue —
   */
  database?: string;
  /**
   * TLS settings passed to node-postgres (`true`, or `{ ca, rejectUnauthorized, cert, key }`). Not
   * together with an `ssl*` parameter in `connectionString`: node-postgres would let the string's
   * settings replace these without a word (`?sslmode=disable` drops `{ ca }` and connects in plain
   * text), so that combination is refused with an {@link InvalidOptionError}.
   * @defaultValue —
   */
  ssl?: pg.ConnectionConfig['ssl'];
  /**
   * Maximum pool size. Ignored with `pool`.
   * @defaultValue `10`
   */
  max?: number;
  /**
   * Idle connection lifetime in ms. Ignored with `pool`.
   * @defaultValue `10000`
   */
  idleTimeoutMillis?: number;
  /**
   * Time to wait for a connection in ms (`0` = forever). Ignored with `pool`.
   * @defaultValue `10000`
   */
  connectionTimeoutMillis?: number;
  /**
   * Server-side `statement_timeout` of every statement in ms (`0` = none), pg-boss's own pool
   * included (with `pool`, the pool's `statement_timeout` is reused for pg-boss's); the CLI's
   * pg-boss connection (`migrate`, `dlq`) has none.
   * @defaultValue `30000`
   */
  statementTimeoutMillis?: number;
  /**
   * `application_name` shown in `pg_stat_activity`. Ignored with `pool`.
   * @defaultValue `arvo-postgres`
   */
  applicationName?: string;
}

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

/** Pool timeouts: they feed Node timers and `statement_timeout`. */
const TIMEOUT_RANGE = { min: 0, max: MAX_TIMER_MS };

/** The checks and defaults of {@link ConnectionOptions}; `resolveConnection` adds the rules between them. */
export const CONNECTION_OPTIONS: OptionTable<ConnectionOptions> = {
  pool: option((value, at): pg.Pool => {
    if (!isPool(value)) throw new InvalidOptionError(at, 'expected a pg.Pool instance');
    return value;
  }),
  connectionString: text(),
  host: text(),
  port: integer({ min: 1, max: 65535 }),
  user: text(),
  password: text(),
  database: text(),
  ssl: option((value, at) =>
    typeof value === 'boolean' ? value : (expectObject(value, at) as NonNullable<pg.ConnectionConfig['ssl']>),
  ),
  max: integer({ min: 1, max: 1000 }, 10),
  idleTimeoutMillis: integer(TIMEOUT_RANGE, 10_000),
  connectionTimeoutMillis: integer(TIMEOUT_RANGE, 10_000),
  statementTimeoutMillis: integer(TIMEOUT_RANGE, 30_000),
  applicationName: text('arvo-postgres'),
};

/** The option keys of {@link ConnectionOptions}, for option objects that take a connection. */
export const CONNECTION_OPTION_KEYS = Object.keys(CONNECTION_OPTIONS) as (keyof ConnectionOptions)[];

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
  const settings = Object.fromEntries(
    CONNECTION_OPTION_KEYS.filter((key) => options[key] !== undefined).map((key) => [key, options[key]]),
  );
  const { pool, statementTimeoutMillis, applicationName, ...config } = resolveOptions(
    CONNECTION_OPTIONS,
    settings,
    prefix,
  );
  if (pool !== undefined) return { pool };
  if (config.connectionString !== undefined) {
    let url: URL;
    try {
      url = new URL(config.connectionString);
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
    checkTlsParameters(url, config.ssl !== undefined, at);
  }
  return {
    config: { ...config, statement_timeout: statementTimeoutMillis, application_name: applicationName },
  };
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
