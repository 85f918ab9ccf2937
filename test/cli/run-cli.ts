import { type Run, root, runTypeScript } from '../support/process';

export { type Run, root };

/** Runs the CLI as a real subprocess: `node --import tsx src/cli/main.ts ...args`, from the repository root. */
export function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return runTypeScript('src/cli/main.ts', args, { cwd: root, env });
}
