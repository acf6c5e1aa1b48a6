/**
 * A long-lived process with streamed I/O, the shape exec sessions and the container share:
 * spawned either on plain pipes (here) or under a pseudo-terminal (pty.ts).
 */
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { ExitReport, TerminalSize } from '@fcvm/protocol';
import { describeError, logLine } from './log.js';

export interface ProcessIo {
  readonly pid: number;
  readonly stdin: Writable;
  /** The terminal's output with a PTY. */
  readonly stdout: Readable;
  /** null with a PTY: the terminal merges both. */
  readonly stderr: Readable | null;
  /** Settles once the process has exited and its output pipes are closed. */
  readonly exited: Promise<ExitReport>;
  /**
   * Settles when the process itself has exited, even if a descendant still holds its output pipes
   * open (then `exited` waits; the caller bounds that wait).
   */
  readonly processExited: Promise<void>;
  /** Changes the terminal size; a no-op on pipes. */
  resize(size: TerminalSize): Promise<void>;
  /** Signals the whole process group. */
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string | null;
}

export class SpawnError extends Error {
  constructor(argv: readonly string[], cause: unknown) {
    super(`cannot start ${argv[0] ?? '(nothing)'}: ${describeError(cause)}`, { cause });
    this.name = 'SpawnError';
  }
}

/** Shell convention: a death by signal N reports 128+N. */
export function exitReportOf(code: number | null, signal: NodeJS.Signals | null): ExitReport {
  if (signal !== null) {
    const number = signalNumber(signal);
    return { exitCode: number === null ? 255 : 128 + number, signal };
  }
  return { exitCode: code ?? 255, signal: null };
}

function signalNumber(signal: NodeJS.Signals): number | null {
  const table: Partial<Record<NodeJS.Signals, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGPIPE: 13,
    SIGTERM: 15,
  };
  return table[signal] ?? null;
}

/**
 * Spawns `argv` on pipes in its own process group (so kill() reaches its children too).
 * Resolves once the process runs; rejects with SpawnError if it cannot start.
 */
export function spawnWithPipes(argv: readonly string[], options: SpawnOptions): Promise<ProcessIo> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new SpawnError(argv, 'empty command'));
  const child = spawn(file, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: options.env,
    cwd: options.cwd ?? undefined,
    detached: true,
  });
  const exited = new Promise<ExitReport>((resolve) => {
    child.once('close', (code, signal) => resolve(exitReportOf(code, signal)));
  });
  const processExited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(new SpawnError(argv, err)));
    child.once('spawn', () => {
      const pid = child.pid;
      if (pid === undefined) {
        reject(new SpawnError(argv, 'no process id'));
        return;
      }
      // A reader that went away must not crash the agent; the session reports the exit instead.
      child.stdin.on('error', (err) => logLine(`stdin of ${file}: ${describeError(err)}`));
      resolve({
        pid,
        stdin: child.stdin,
        stdout: child.stdout,
        stderr: child.stderr,
        exited,
        processExited,
        resize: () => Promise.resolve(),
        kill: (signal) => killGroup(pid, signal),
      });
    });
  });
}

export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** How long output may keep flowing after the process exited (a descendant may hold its pipes open). */
export const OUTPUT_AFTER_EXIT_MS = 30_000;

/**
 * Waits for the output `pumps` of `io`. Once the process itself has exited they get
 * OUTPUT_AFTER_EXIT_MS more; then its output pipes are closed so the session can end.
 */
export async function drainOutput(io: ProcessIo, pumps: readonly Promise<void>[], what: string): Promise<void> {
  const done = Promise.all(pumps).then(() => true);
  let timer: NodeJS.Timeout | undefined;
  const late = io.processExited.then(
    () =>
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), OUTPUT_AFTER_EXIT_MS);
      }),
  );
  const finished = await Promise.race([done, late]);
  clearTimeout(timer);
  if (finished) return;
  logLine(`${what} exited ${OUTPUT_AFTER_EXIT_MS / 1000} s ago and its output is still open: closing it`);
  io.stdout.destroy();
  io.stderr?.destroy();
  await done;
}
