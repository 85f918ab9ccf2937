import { redactSecrets } from '../shared/redact';
import type { CliIo } from './common';

// C0 controls except tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI on some terminals).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * Text as the CLI may print it: credentials redacted (see `redactSecrets`), and every control
 * character a terminal would act on written as a visible `\u001b`-style escape, so a subject or an
 * error message cannot move the cursor, clear the screen or retitle the window. In JSON output a raw
 * control character can only sit inside a string, where the same escape is valid JSON for the same
 * value, so `--json` output stays valid.
 */
export function printable(text: string): string {
  return redactSecrets(text).replace(
    CONTROL,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** `io` with everything written to stdout and stderr passed through {@link printable}. */
export function printableIo(io: CliIo): CliIo {
  return {
    ...io,
    stdout: (text) => io.stdout(printable(text)),
    stderr: (text) => io.stderr(printable(text)),
  };
}

/** A time to the second, `2026-01-02 03:04:05Z`; `-` for none. */
export function shortTime(date: Date | null): string {
  return date
    ? date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '-';
}

/** `text` on one line (whitespace runs collapsed), cut to `max` characters with `…`. */
export function oneLine(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
