/**
 * TLS: a PostgreSQL of its own with `ssl = on`, a CA and a server certificate made here with
 * openssl, and a pg_hba.conf that accepts TCP connections only over TLS (`hostssl`, and `hostnossl
 * … reject`). The library connects with `ssl: { ca, rejectUnauthorized: true }`; a connection without
 * TLS is refused, and so is one that trusts another CA. TLS in a connection string: what sslmode
 * refuses is refused, an unreadable sslrootcert/sslcert/sslkey is an option error, and the `ssl`
 * option beside `ssl*` parameters (which node-postgres would silently prefer) is refused.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { createPostgresLock } from '../../src/lock/index';
import { connectPostgresMachineMemory } from '../../src/memory/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { silentLogger } from '../../src/shared/logger';
import { clientEvent, handler, replyTo } from '../broker/support';
import { type RestartablePostgresServer, startRestartablePostgres } from '../support/postgres-server';

const run = promisify(execFile);
const OPENSSL = '/usr/bin/openssl';

/** A CA and a server certificate for 127.0.0.1/localhost signed by it, in `dir`. */
async function makeCertificates(dir: string, name: string): Promise<void> {
  const at = (file: string) => path.join(dir, `${name}-${file}`);
  await run(OPENSSL, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name} test CA`,
    '-keyout',
    at('ca.key'),
    '-out',
    at('ca.crt'),
  ]);
  await run(OPENSSL, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    at('server.key'),
    '-out',
    at('server.csr'),
  ]);
  await writeFile(at('san.ext'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\n');
  await run(OPENSSL, [
    'x509',
    '-req',
    '-in',
    at('server.csr'),
    '-CA',
    at('ca.crt'),
    '-CAkey',
    at('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    at('san.ext'),
    '-out',
    at('server.crt'),
  ]);
}

describe('TLS: verified connections, plain ones refused', () => {
  let certs: string;
  let server: RestartablePostgresServer;
  let ca: string;
  let otherCa: string;
  const connection = () => ({
    host: '127.0.0.1',
    port: server.port,
    user: 'postgres',
    password: 'postgres',
    database: 'postgres',
  });

  before(async () => {
    certs = await mkdtemp(path.join(tmpdir(), 'arvo-postgres-tls-'));
    await makeCertificates(certs, 'main');
    await makeCertificates(certs, 'other');
    ca = await readFile(path.join(certs, 'main-ca.crt'), 'utf8');
    otherCa = await readFile(path.join(certs, 'other-ca.crt'), 'utf8');
    server = await startRestartablePostgres({
      // Relative paths are relative to the data directory.
      postgresFlags: ['-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key'],
      async configure(dataDir, owner) {
        for (const file of ['server.crt', 'server.key']) {
          const target = path.join(dataDir, file);
          await writeFile(target, await readFile(path.join(certs, `main-${file}`)));
          await chown(target, owner.uid, owner.gid);
          await chmod(target, 0o600);
        }
        await writeFile(
          path.join(dataDir, 'pg_hba.conf'),
          [
            'local all all trust',
            'hostssl all all 127.0.0.1/32 scram-sha-256',
            'hostnossl all all 127.0.0.1/32 reject',
            '',
          ].join('\n'),
        );
      },
    });
  });

  after(async () => {
    await server?.destroy();
    await rm(certs, { recursive: true, force: true });
  });

  it('connects with the CA verified, over TLS', async () => {
    const client = new pg.Client({ ...connection(), ssl: { ca, rejectUnauthorized: true } });
    await client.connect();
    try {
      const { rows } = await client.query(
        'SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      );
      assert.equal(rows[0].ssl, true);
      assert.match(rows[0].version, /^TLS/);
    } finally {
      await client.end();
    }
  });

  /** Runs the memory and a broker on `connection` and checks every TCP connection used TLS. */
  async function roundTripOverTls(connection: Record<string, unknown>): Promise<void> {
    const memory = await connectPostgresMachineMemory({ ...connection, logger: silentLogger });
    const broker = new PostgresEventBroker({ ...connection, logger: silentLogger });
    try {
      await memory.write('tls-subject', { over: 'tls' }, null);
      assert.deepEqual(await memory.read('tls-subject'), { over: 'tls' });
      await memory.deleteWorkflow('tls-subject');
      await broker.register(handler('com.tls.echo', async (event) => [replyTo(event, 'evt.tls.echo')]));
      await broker.start();
      const reply = await broker.resolve(clientEvent('com.tls.echo'), { timeoutMs: 20_000 });
      assert.equal(reply.type, 'evt.tls.echo');
      const { rows } = await memory.pool.query(
        `SELECT count(*)::int AS plain FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.client_addr IS NOT NULL AND NOT s.ssl`,
      );
      assert.equal(rows[0].plain, 0, 'every TCP connection uses TLS');
    } finally {
      await broker.stop({ timeoutMs: 2000 });
      await memory.close();
    }
  }

  /** The connection string of the server with `query` (sslmode and friends). */
  const urlWith = (query: string) =>
    `postgres://postgres:postgres@127.0.0.1:${server.port}/postgres?${query}`;

  /** What connecting a memory with `connectionString` throws, as text (message and causes). */
  async function refusal(connectionString: string): Promise<string> {
    try {
      const memory = await connectPostgresMachineMemory({ connectionString, logger: silentLogger });
      await memory.close();
    } catch (error) {
      const texts: string[] = [];
      for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) texts.push(cause.message);
      return texts.join(' <- ');
    }
    assert.fail(`connected with ${connectionString}`);
  }

  it('runs the memory and the broker over verified TLS', async () => {
    await roundTripOverTls({ ...connection(), ssl: { ca, rejectUnauthorized: true } });
  });

  it('takes sslmode=verify-full and sslrootcert from the connection string', async () => {
    const rootCert = encodeURIComponent(path.join(certs, 'main-ca.crt'));
    await roundTripOverTls({ connectionString: urlWith(`sslmode=verify-full&sslrootcert=${rootCert}`) });
  });

  it('refuses what the connection string sslmode refuses', async () => {
    const otherRoot = encodeURIComponent(path.join(certs, 'other-ca.crt'));
    assert.match(await refusal(urlWith(`sslmode=verify-full&sslrootcert=${otherRoot}`)), /certificate/);
    // The server accepts TLS only.
    assert.match(await refusal(urlWith('sslmode=disable')), /no encryption/);
    // node-postgres verifies the certificate for sslmode=require too (like verify-full; libpq would
    // not): without the CA the self-signed chain is refused.
    assert.match(await refusal(urlWith('sslmode=require')), /certificate/);
  });

  it('gives libpq semantics with uselibpqcompat=true: sslmode=require encrypts without verifying', async () => {
    const memory = await connectPostgresMachineMemory({
      connectionString: urlWith('uselibpqcompat=true&sslmode=require'),
      logger: silentLogger,
    });
    try {
      const { rows } = await memory.pool.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal(rows[0].ssl, true);
    } finally {
      await memory.close();
    }
  });

  /**
   * Asserts that the memory, the lock and the broker each refuse `options` with an
   * {@link InvalidOptionError} on `option` whose message matches `message`, before connecting.
   * Returns the three messages.
   */
  async function refusedOption(
    options: Record<string, unknown>,
    option: string,
    message: RegExp,
  ): Promise<string[]> {
    const given = { ...options, logger: silentLogger };
    const constructors: Array<[string, () => Promise<unknown>]> = [
      ['memory', () => connectPostgresMachineMemory(given)],
      ['lock', () => createPostgresLock(given)],
      ['broker', async () => new PostgresEventBroker(given)],
    ];
    const messages: string[] = [];
    for (const [what, construct] of constructors) {
      await assert.rejects(construct, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, `${what}: ${String(error)}`);
        assert.equal(error.option, option, what);
        assert.match(error.message, message, what);
        messages.push(error.message);
        return true;
      });
    }
    return messages;
  }

  it('refuses the ssl option beside ssl* parameters of the connection string, which node-postgres lets win', async () => {
    // The hazard: node-postgres drops `ssl: { ca }` for the string's sslmode=disable and connects in
    // plain text (which this server refuses).
    const plain = new pg.Client({
      connectionString: urlWith('sslmode=disable'),
      ssl: { ca, rejectUnauthorized: true },
    });
    await assert.rejects(plain.connect(), /no encryption/);
    await plain.end().catch(() => {});

    const rootCert = encodeURIComponent(path.join(certs, 'main-ca.crt'));
    const ssl = { ca, rejectUnauthorized: true };
    await refusedOption(
      { connectionString: urlWith('sslmode=disable'), ssl },
      'ssl',
      /conflicts with sslmode in `connectionString`/,
    );
    await refusedOption(
      { connectionString: urlWith(`sslmode=verify-full&sslrootcert=${rootCert}`), ssl: false },
      'ssl',
      /conflicts with sslmode, sslrootcert in `connectionString`/,
    );
    await refusedOption({ connectionString: urlWith('ssl=true'), ssl }, 'ssl', /conflicts with ssl in/);
    await refusedOption(
      { connectionString: urlWith('sslnegotiation=direct'), ssl },
      'ssl',
      /conflicts with sslnegotiation in/,
    );

    // Other parameters beside the ssl option are fine, and the option is what applies.
    const memory = await connectPostgresMachineMemory({
      connectionString: urlWith('application_name=tls-option'),
      ssl,
      logger: silentLogger,
    });
    try {
      const { rows } = await memory.pool.query(
        `SELECT s.ssl, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE pid = pg_backend_pid()`,
      );
      assert.deepEqual(rows, [{ ssl: true, application_name: 'tls-option' }]);
    } finally {
      await memory.close();
    }
  });

  it('names an unreadable sslrootcert, sslcert or sslkey file, never the password', async () => {
    const password = 'Tls-Url-Pw-4e1c';
    const withPassword = (query: string) =>
      `postgres://postgres:${password}@127.0.0.1:${server.port}/postgres?${query}`;
    const unreadable = [
      [
        'sslmode=verify-full&sslrootcert=/missing/file',
        /^Invalid option `connectionString`: sslrootcert names a file that cannot be read: "\/missing\/file" \(ENOENT\)$/,
      ],
      [
        `sslcert=${encodeURIComponent('/missing/cert.pem')}`,
        /sslcert names a file that cannot be read: "\/missing\/cert.pem" \(ENOENT\)/,
      ],
      // A directory is not a key file either.
      [`sslkey=${encodeURIComponent(certs)}`, /sslkey names a file that cannot be read: .* \(EISDIR\)/],
    ] as const;
    for (const [query, message] of unreadable) {
      for (const text of await refusedOption(
        { connectionString: withPassword(query) },
        'connectionString',
        message,
      )) {
        assert.ok(!text.includes(password), text);
        assert.ok(!text.includes('127.0.0.1'), text);
      }
    }
  });

  it('refuses a connection without TLS', async () => {
    const client = new pg.Client({ ...connection(), ssl: false });
    await assert.rejects(client.connect(), (error: Error & { code?: string }) => {
      assert.equal(error.code, '28000');
      assert.match(error.message, /no encryption/);
      return true;
    });
    await client.end().catch(() => {});
  });

  it('refuses a server certificate from another CA', async () => {
    const client = new pg.Client({ ...connection(), ssl: { ca: otherCa, rejectUnauthorized: true } });
    await assert.rejects(client.connect(), /certificate/);
    await client.end().catch(() => {});
  });
});
