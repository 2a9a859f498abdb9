/**
 * Command-line flags for the demo's commands: `node:util` parseArgs, plus what running them
 * through `pnpm <script> -- --flag` needs (pnpm passes the `--` on), and a usage line instead of
 * a stack trace for a bad flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseCommandLine<O extends Options>(config: { options: O }, usage: string): ReturnType<typeof parseArgs<{ options: O }>> {
  const args = process.argv.slice(2);
  if (args[0] === '--') args.shift();
  try {
    return parseArgs({ options: config.options, args, strict: true, allowPositionals: false }) as ReturnType<typeof parseArgs<{ options: O }>>;
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
}
