/**
 * A private fcvm data dir for VM tests whose assets/ is the shared test asset cache (built once
 * per machine, see assets.ts), so each test file starts from an empty registry without
 * rebuilding anything. `cleanup()` removes the private dir (never the shared cache).
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { testAssets, testAssetsDataDir } from './assets.js';
import { CLI_BUNDLE } from './cli.js';

export interface VmTestEnv {
  readonly dataDir: string;
  readonly env: NodeJS.ProcessEnv;
  cleanup(): void;
}

export async function vmTestEnv(prefix = 'fcvm-vm-'): Promise<VmTestEnv> {
  await testAssets();
  // Short path: Unix socket paths below it must stay under 108 bytes.
  const dataDir = mkdtempSync(join('/tmp', prefix));
  symlinkSync(testAssetsDataDir().assets, join(dataDir, 'assets'));
  return {
    dataDir,
    env: { ...process.env, FCVM_DATA_DIR: dataDir, FCVM_LOG: 'info' },
    cleanup: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

export interface RunningFcvm {
  readonly child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves when the output (stdout + stderr) matches, rejects at the deadline or on exit. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Exit status (or 128+signal), with a deadline after which the process is killed. */
  exited(timeoutMs?: number): Promise<number>;
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Starts fcvm with pipes, or with `pty: true` on a pseudo-terminal made by util-linux `script`
 * (then stdin/stdout of the returned child are the terminal's input and output).
 */
export function spawnFcvm(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  options: { pty?: boolean } = {},
): RunningFcvm {
  const argv = [process.execPath, CLI_BUNDLE, ...args];
  const child = options.pty
    ? spawn('script', ['-qfec', argv.map(shellQuote).join(' '), '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(argv[0] as string, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const l of listeners) l();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const l of listeners) l();
  });
  const exit = new Promise<number>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15))),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitForOutput(pattern, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(out) || pattern.test(err)) done(resolve);
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`timed out waiting for ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))),
          timeoutMs,
        );
        const onExit = (): void => {
          check();
          done(() => reject(new Error(`fcvm exited before ${pattern}\nstdout:\n${out}\nstderr:\n${err}`)));
        };
        const done = (fn: () => void): void => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('close', onExit);
          fn();
        };
        listeners.add(check);
        child.once('close', onExit);
        check();
      });
    },
    async exited(timeoutMs = 180_000) {
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Runs fcvm to completion (for short commands such as ls and exec). */
export function fcvmSync(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  input?: string,
): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [CLI_BUNDLE, ...args], {
      env,
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    return { status: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stdout: string; stderr: string };
    return { status: e.status ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** PIDs of processes whose command line contains `needle` (e.g. a VM id). */
export function processesMatching(needle: string): number[] {
  const pids: number[] = [];
  for (const line of execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n')) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (match?.[2]?.includes(needle) && !match[2].startsWith('ps ')) pids.push(Number(match[1]));
  }
  return pids;
}
