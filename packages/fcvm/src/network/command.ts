/**
 * Running the host's network tools (ip, nft, nsenter) with argv arrays. A failure is a NETWORK
 * error naming the command and its last line of error output.
 */
import { execFile } from 'node:child_process';
import { FcvmError } from '../errors.js';

const COMMAND_TIMEOUT_MS = 15_000;

export function runNetworkCommand(argv: readonly string[], input?: string): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runNetworkCommand needs a program');
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout);
        return;
      }
      const lastLine = stderr
        .split('\n')
        .filter((l) => l.trim() !== '')
        .at(-1);
      reject(
        new FcvmError('NETWORK', `${argv.join(' ')} failed: ${lastLine?.trim() ?? err.message}.`, {
          cause: err,
          context: { argv, stderr },
        }),
      );
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs `ip -batch -` inside a network namespace: one process for many changes. */
export function ipBatchIn(netnsPath: string, lines: readonly string[]): Promise<string> {
  return runNetworkCommand(['nsenter', `--net=${netnsPath}`, '--', 'ip', '-batch', '-'], `${lines.join('\n')}\n`);
}
