import type { CliIo } from '../../src/cli/common';
import { runCli } from '../../src/cli/run';

/** Runs one CLI command line in this process; stdout and stderr together in `output`. */
export async function runCliInProcess(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number; output: string }> {
  let output = '';
  const io: CliIo = {
    stdout: (text) => {
      output += text;
    },
    stderr: (text) => {
      output += text;
    },
    env,
    interrupted: () => new Promise(() => {}),
  };
  const code = await runCli(args, io);
  return { code, output };
}
