import { redactSecrets } from '../shared/redact';
import type { CliIo } from './common';

/** Text as the CLI may print it: credentials redacted (see `redactSecrets`). */
export function printable(text: string): string {
  return redactSecrets(text);
}

/** `io` with everything written to stdout and stderr passed through {@link printable}. */
export function printableIo(io: CliIo): CliIo {
  return {
    ...io,
    stdout: (text) => io.stdout(printable(text)),
    stderr: (text) => io.stderr(printable(text)),
  };
}
