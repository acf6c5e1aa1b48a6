/**
 * Running the host's network tools (ip, nft, nsenter) with argv arrays, through the one subprocess
 * runner. A failure is a NETWORK error naming the command and its last line of error output.
 */
import { run } from '../util/subprocess.js';

const COMMAND_TIMEOUT_MS = 15_000;

export function runNetworkCommand(argv: readonly string[], input?: string): Promise<string> {
  return run(argv, { errorCode: 'NETWORK', timeoutMs: COMMAND_TIMEOUT_MS, ...(input === undefined ? {} : { input }) });
}

/** Runs `ip -batch -` inside a network namespace: one process for many changes. */
export function ipBatchIn(netnsPath: string, lines: readonly string[]): Promise<string> {
  return runNetworkCommand(['nsenter', `--net=${netnsPath}`, '--', 'ip', '-batch', '-'], `${lines.join('\n')}\n`);
}
