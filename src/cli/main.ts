#!/usr/bin/env node
// arvo-postgres command line (see README, Operations).
import { describeError } from '../shared/redact';
import { printable } from './output';
import { runCli } from './run';

let interrupted: Promise<void> | undefined;

runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  ...(process.stdout.isTTY ? { clearScreen: () => process.stdout.write('\x1b[H\x1b[2J') } : {}),
  // Installed only by commands that wait for it (--watch): others keep Node's default Ctrl-C.
  interrupted: () => {
    interrupted ??= new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    return interrupted;
  },
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // runCli reports every error itself; this would be a bug, still reported without secrets.
    process.stderr.write(`arvo-postgres: internal error: ${printable(describeError(error).message)}\n`);
    process.exitCode = 1;
  },
);
