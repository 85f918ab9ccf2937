import { createServer } from 'node:http';
import { createDashboard } from '../../dashboard/index';
import { connectionStringOf, defineCommand, EXIT, UsageError } from '../common';

const DEFAULT_PORT = 4747;
const TOKEN_VARIABLE = 'ARVO_DASHBOARD_TOKEN';

/** Hosts that only this machine reaches. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export const dashboardCommand = defineCommand({
  name: 'dashboard',
  summary: 'web UI: queues, dead letters, workflows (read-only by default)',
  usage: `Usage: arvo-postgres dashboard [--port n] [--host addr] [--enable-actions] [--trace-url <url>]

Serves the web dashboard until Ctrl-C: queues (counts, oldest waiting, throughput), dead letters,
workflows and one workflow's tree, state, dead letters and timeline. It only reads, so a role with
SELECT rights is enough, unless --enable-actions turns on replay and purge of dead letters: every
action then needs the token from $${TOKEN_VARIABLE} (at least 16 characters; never on the command line).

  --port <n>          port (default ${DEFAULT_PORT}; 0 picks a free one)
  --host <addr>       address to listen on (default 127.0.0.1: this machine only)
  --enable-actions    allow replay and purge, with the token from $${TOKEN_VARIABLE}
  --trace-url <url>   link trace ids to a tracing UI, e.g. http://localhost:16686/trace/{traceId}`,
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    'enable-actions': { type: 'boolean', default: false },
    'trace-url': { type: 'string' },
  },
  async run({ values, names }, io) {
    const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535)
      throw new UsageError(`--port: expected 0 (any free port) to 65535, got ${JSON.stringify(values.port)}`);
    const token = io.env[TOKEN_VARIABLE];
    if (values['enable-actions'] && !token) {
      throw new UsageError(`--enable-actions needs the action token in $${TOKEN_VARIABLE}`);
    }
    const dashboard = createDashboard({
      connectionString: connectionStringOf(values, io),
      max: 4,
      schema: names.schema,
      stateTable: names.stateTable,
      historyTable: names.historyTable,
      pgBossSchema: names.pgBossSchema,
      ...(values['enable-actions'] ? { actionToken: token } : {}),
      ...(values['trace-url'] ? { traceUrl: values['trace-url'] } : {}),
    });
    const server = createServer((req, res) => dashboard(req, res));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, values.host, () => resolve());
      });
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      const shownHost = values.host.includes(':') ? `[${values.host}]` : values.host;
      io.stdout(
        `arvo-postgres dashboard on http://${shownHost}:${bound}/ (${values['enable-actions'] ? 'actions enabled' : 'read-only'}); Ctrl-C stops it\n`,
      );
      if (!isLoopback(values.host)) {
        io.stderr(
          `warning: listening on ${values.host}: anyone who reaches it can read workflow data; put it behind an authenticating proxy\n`,
        );
      }
      await io.interrupted();
      return EXIT.ok;
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await dashboard.close();
    }
  },
});
