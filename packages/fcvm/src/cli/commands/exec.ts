import { basename } from 'node:path';
import { Command } from 'commander';
import { usageError } from '../../errors.js';
import { getLogLevel, setLogLevel } from '../../log.js';
import { type ExecRequest, execInVm } from '../../vm/exec.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName, parsePid } from '../parse.js';

interface RawOptions {
  pid?: number;
  name?: string;
  vm?: boolean;
  shell?: boolean;
  interactive?: boolean;
  tty?: boolean;
  quiet?: boolean;
}

export function execCommand(getContext: () => CliContext): Command {
  const command = new Command('exec')
    .description('run a command in a running VM (in its container by default) and exit with its status')
    .argument('<command...>', 'the command and its arguments (put -- before it if it has options)')
    .option('--pid <pid>', 'target VM by the PID of its fcvm process (see fcvm ls)', (v) => parsePid(v))
    .option('--name <name>', 'target VM by name', (v) => parseName(v))
    .option('--vm', 'run in the guest OS instead of the container')
    .option('-c, --shell', 'run the command through sh -c')
    .option('-i, --interactive', 'forward stdin')
    .option('-t, --tty', 'allocate a terminal (implies -q)')
    .option('-q, --quiet', "fcvm's own messages: errors only (the command's output is untouched)")
    .passThroughOptions();

  return defineAction(command, async (argv: string[], raw: RawOptions) => {
    const request = toExecRequest(argv, raw, process.stdin.isTTY === true);
    // A terminal session (or -q) shows only the command: fcvm's notices would land in its screen.
    if (request.quiet && ['warn', 'info'].includes(getLogLevel())) setLogLevel('error');
    const context = getContext();
    return execInVm(request, {
      dataDir: context.dataDir,
      registry: context.registry(),
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
    });
  });
}

/** Commands that are an interactive shell when started bare: `fcvm exec --name web -- sh` means -it. */
const SHELLS = new Set(['sh', 'bash', 'ash', 'dash', 'zsh', 'fish', 'ksh']);

/** `stdinIsTty`: a bare shell on a terminal gets -i -t implied, as in the reference. */
export function toExecRequest(argv: readonly string[], raw: RawOptions, stdinIsTty = false): ExecRequest {
  if (raw.pid !== undefined && raw.name !== undefined) throw usageError('Give either --pid or --name, not both.');
  if (raw.pid === undefined && raw.name === undefined) throw usageError('Say which VM: give --pid PID or --name NAME.');
  const command = raw.shell ? ['sh', '-c', argv.join(' ')] : [...argv];
  const bareShell = !raw.shell && command.length === 1 && SHELLS.has(basename(command[0] as string));
  const tty = raw.tty === true || (bareShell && stdinIsTty);
  return {
    target: raw.pid !== undefined ? { pid: raw.pid } : { name: raw.name as string },
    command,
    inVm: raw.vm === true,
    interactive: raw.interactive === true || tty,
    tty,
    quiet: raw.quiet === true || tty,
  };
}
