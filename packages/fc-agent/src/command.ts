/**
 * Runs short system commands (ip, date, chronyc, podman load ...) to completion with argv arrays,
 * collecting both pipes. Long-lived processes with streamed I/O live in process-io.ts instead.
 */
import { execFile } from 'node:child_process';

export interface CommandResult {
  readonly argv: readonly string[];
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class CommandError extends Error {
  readonly result: CommandResult;

  constructor(result: CommandResult) {
    const detail = result.stderr.trim().split('\n').slice(-3).join(' | ');
    super(`${result.argv.join(' ')} exited with ${result.exitCode}${detail === '' ? '' : `: ${detail}`}`);
    this.name = 'CommandError';
    this.result = result;
  }
}

export interface CommandOptions {
  readonly timeoutMs?: number;
  /** Resolve with the result even when the exit status is not 0. */
  readonly allowFailure?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  /** Written to the program's stdin (then closed): for data that must not show in argv, e.g. secrets. */
  readonly input?: string;
  /**
   * Sent when the timeout hits (default SIGKILL). podman gets SIGTERM: killed with SIGKILL it can
   * leave the container's lock held, and the next podman on that container waits for ever.
   */
  readonly killSignal?: NodeJS.Signals;
}

const DEFAULT_TIMEOUT_MS = 60_000;

export function runCommand(argv: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('runCommand needs a program');
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: options.killSignal ?? 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        env: options.env ?? process.env,
      },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') {
          // Not an exit status: the program is missing, or it timed out and was killed.
          reject(new Error(`${argv.join(' ')} could not run: ${error.message}`, { cause: error }));
          return;
        }
        const exitCode = typeof error?.code === 'number' ? error.code : 0;
        const result: CommandResult = { argv, exitCode, stdout, stderr };
        if (result.exitCode !== 0 && options.allowFailure !== true) reject(new CommandError(result));
        else resolve(result);
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
