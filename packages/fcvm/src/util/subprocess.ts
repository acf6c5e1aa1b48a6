/**
 * The one way fcvm runs other programs. Two shapes:
 *   - `run(argv, options)`: a tool that runs to completion (ip, nft, qemu-img, cp, mmdebstrap, ...).
 *     It resolves with stdout; a non-zero exit, a signal, a timeout or a missing program rejects with
 *     an FcvmError of the caller's code naming the program and its last line of error output.
 *   - `startHelper(argv, options)`: a long-lived helper (a VMM, pasta, a namespace holder) in its own
 *     process group (a Ctrl-C at fcvm's terminal is for fcvm, which then stops it in order) that dies
 *     with fcvm, also on SIGKILL (`setpriv --pdeathsig SIGKILL`).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { FcvmError, type FcvmErrorCode } from '../errors.js';
import { log } from '../log.js';

export interface RunOptions {
  /** What a failure becomes (default INTERNAL). */
  readonly errorCode?: FcvmErrorCode;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
  /** Ends the program with `killSignal` after this long, which is then a failure. */
  readonly timeoutMs?: number;
  /** Default SIGKILL. */
  readonly killSignal?: NodeJS.Signals;
  /** Written to the program's stdin, which is then closed. */
  readonly input?: string;
  /** Called with each complete line on stdout or stderr (progress, debug logging). */
  readonly onLine?: (line: string) => void;
  /** Write stdout into this file (created 0600 or truncated) instead of returning it. */
  readonly stdoutPath?: string;
  /**
   * Descriptors the program inherits as fd 3, 4, ...: a lock held this way outlives fcvm while the
   * program runs.
   */
  readonly inheritFds?: readonly number[];
}

const STDERR_TAIL_LINES = 20;

/** Splits a byte stream into lines for `onLine`. */
function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  };
}

export function run(argv: readonly string[], options: RunOptions = {}): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('run needs a program');
  const code = options.errorCode ?? 'INTERNAL';
  return new Promise((resolve, reject) => {
    const stdoutFd = options.stdoutPath === undefined ? undefined : openSync(options.stdoutPath, 'w', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: [
          options.input === undefined ? 'ignore' : 'pipe',
          stdoutFd ?? 'pipe',
          'pipe',
          ...(options.inheritFds ?? []),
        ],
        signal: options.signal,
      });
    } finally {
      if (stdoutFd !== undefined) closeSync(stdoutFd);
    }
    const stdout: Buffer[] = [];
    const stderrTail: string[] = [];
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill(options.killSignal ?? 'SIGKILL');
          }, options.timeoutMs).unref();
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    if (options.onLine !== undefined) child.stdout?.on('data', lineSplitter(options.onLine));
    child.stderr?.on(
      'data',
      lineSplitter((line) => {
        stderrTail.push(line);
        if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
        options.onLine?.(line);
      }),
    );
    if (options.input !== undefined) {
      child.stdin?.on('error', () => undefined); // a program that exits without reading: its status tells
      child.stdin?.end(options.input);
    }
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new FcvmError(code, `Could not run ${file}: ${err.message}.`, { cause: err, context: { argv } }));
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (status === 0) {
        resolve(Buffer.concat(stdout).toString('utf8'));
        return;
      }
      const how = timedOut
        ? `did not finish within ${(options.timeoutMs ?? 0) / 1000} s`
        : signal
          ? `was killed by ${signal}`
          : `exited with status ${status}`;
      const lastLine = stderrTail.filter((l) => l.trim() !== '').at(-1);
      reject(
        new FcvmError(code, `${file} ${how}${lastLine ? `: ${lastLine.trim()}` : '.'}`, {
          context: { argv, stderr: stderrTail.join('\n') },
        }),
      );
    });
  });
}

let pdeathsigPrefix: readonly string[] | null | undefined;

/** argv prefix that makes the next exec'd program die with fcvm, or null when this setpriv cannot. */
export function parentDeathPrefix(): readonly string[] | null {
  if (pdeathsigPrefix !== undefined) return pdeathsigPrefix;
  // --pdeathsig arrived in util-linux 2.33: check that this setpriv knows it before relying on it.
  const probe = spawnSync('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'true'], { stdio: 'ignore', timeout: 5000 });
  pdeathsigPrefix = probe.status === 0 ? ['setpriv', '--pdeathsig', 'SIGKILL', '--'] : null;
  if (pdeathsigPrefix === null) {
    log.warn(
      'setpriv (util-linux) with --pdeathsig is not available, so helper processes can outlive fcvm if fcvm is killed; install util-linux to bind them.',
    );
  }
  return pdeathsigPrefix;
}

export interface HelperOptions {
  /** Names the helper in errors ("QEMU", "pasta", ...). */
  readonly what: string;
  readonly errorCode: FcvmErrorCode;
  /** Run it inside this network namespace (`nsenter --net=PATH`). */
  readonly netnsPath?: string | null;
  readonly cwd?: string;
  /** stdout and stderr: appended to this file, else discarded; `stderr: 'pipe'` keeps stderr readable. */
  readonly logPath?: string;
  readonly stderr?: 'pipe';
}

export interface Helper {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the helper has exited, however that happened. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
}

/** The full argv of a helper: the parent-death wrapper, the namespace, then the program. */
export function helperArgv(argv: readonly string[], netnsPath: string | null = null): string[] {
  const netns = netnsPath === null ? [] : ['nsenter', `--net=${netnsPath}`, '--'];
  return [...(parentDeathPrefix() ?? []), ...netns, ...argv];
}

/** Starts `argv` as a helper and resolves once it runs (its exec succeeded). */
export async function startHelper(argv: readonly string[], options: HelperOptions): Promise<Helper> {
  const full = helperArgv(argv, options.netnsPath ?? null);
  const [command, ...args] = full;
  if (command === undefined) throw new TypeError('startHelper needs a program');
  const logFd = options.logPath === undefined ? undefined : openSync(options.logPath, 'a', 0o600);
  let child: ChildProcess;
  try {
    const out = logFd ?? 'ignore';
    child = spawn(command, args, {
      stdio: ['ignore', out, options.stderr ?? out],
      detached: true,
      cwd: options.cwd,
    });
  } finally {
    if (logFd !== undefined) closeSync(logFd);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) =>
      reject(
        new FcvmError(options.errorCode, `Could not start ${options.what} (${command}): ${err.message}.`, {
          cause: err,
          context: { argv: full },
        }),
      ),
    );
  });
  if (child.pid === undefined) throw new FcvmError('INTERNAL', `${options.what} started without a PID.`);
  return { child, pid: child.pid, exited };
}
