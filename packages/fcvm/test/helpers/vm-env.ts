/**
 * A private fcvm data dir for VM tests whose assets/ is the shared test asset cache (built once
 * per machine, see assets.ts), so each test file starts from an empty registry without
 * rebuilding anything. `cleanup()` removes the private dir (never the shared cache).
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, afterEach, before } from 'node:test';
import { testAssets, testAssetsDataDir } from './assets.js';
import { CLI_BUNDLE } from './cli.js';

export interface VmTestEnv {
  readonly dataDir: string;
  readonly env: NodeJS.ProcessEnv;
  /** Records a finished test; a failed one makes cleanup() keep the logs. */
  noteResult(test: { readonly name: string; readonly passed: boolean }): void;
  /** Removes the data dir; after a failed test it first keeps the logs (and says where). */
  cleanup(): void;
}

/** Where the logs of failed VM tests are kept (one directory per test file's data dir). */
export const FAILED_TEST_LOGS = '/tmp/fcvm-failed-tests';

export async function vmTestEnv(prefix = 'fcvm-vm-'): Promise<VmTestEnv> {
  await testAssets();
  // Short path: Unix socket paths below it must stay under 108 bytes.
  const dataDir = mkdtempSync(join('/tmp', prefix));
  symlinkSync(testAssetsDataDir().assets, join(dataDir, 'assets'));
  const debugLog = join(dataDir, 'fcvm-debug.log');
  const failed: string[] = [];
  return {
    dataDir,
    env: { ...process.env, FCVM_DATA_DIR: dataDir, FCVM_LOG: 'info', FCVM_DEBUG_LOG: debugLog },
    noteResult: (test) => {
      if (!test.passed) failed.push(test.name);
    },
    cleanup: () => {
      if (failed.length > 0) keepLogs(dataDir, debugLog, failed);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The VM test environment as hooks of the enclosing describe(): created before its tests, results
 * noted after each, logs kept and everything removed after all. Returns the accessor.
 */
export function useVmTestEnv(prefix?: string): () => VmTestEnv {
  let env: VmTestEnv | undefined;
  before(async () => {
    env = await vmTestEnv(prefix);
  });
  afterEach((test) => env?.noteResult(testResult(test)));
  after(() => env?.cleanup());
  return () => {
    if (env === undefined) throw new Error('the VM test environment is not ready (used outside a test?)');
    return env;
  };
}

/** A finished test's name and outcome (`passed` is on the context since Node 20.16; older types lack it). */
export function testResult(test: { readonly name: string }): { name: string; passed: boolean } {
  return { name: test.name, passed: (test as { passed?: boolean }).passed !== false };
}

/** Copies fcvm's debug log, the kept console logs and those of VMs still in vms/ out of the data dir. */
function keepLogs(dataDir: string, debugLog: string, failed: readonly string[]): void {
  const target = join(FAILED_TEST_LOGS, basename(dataDir));
  mkdirSync(target, { recursive: true });
  if (existsSync(debugLog)) cpSync(debugLog, join(target, 'fcvm-debug.log'));
  if (existsSync(join(dataDir, 'logs'))) cpSync(join(dataDir, 'logs'), join(target, 'logs'), { recursive: true });
  const vms = join(dataDir, 'vms');
  for (const vmId of existsSync(vms) ? readdirSync(vms) : []) {
    const consoleLog = join(vms, vmId, 'console.log');
    if (existsSync(consoleLog)) cpSync(consoleLog, join(target, `console-${vmId}.log`));
  }
  process.stderr.write(
    `VM test(s) failed (${failed.join('; ')}): fcvm's debug log and the VMs' console logs are kept in ${target}\n`,
  );
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

/** `fcvm ls --json` in the test's data dir, typed by the caller. */
export function lsRecords<T>(t: VmTestEnv): T[] {
  const ls = fcvmSync(['ls', '--json'], t.env);
  assert.equal(ls.status, 0, ls.stderr);
  return JSON.parse(ls.stdout) as T[];
}

/** Probes every 500 ms until it returns a value; fails naming `what` (and the last error) after `timeoutMs`. */
export async function pollUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.fail(`${what} did not happen in ${timeoutMs / 1000} s${lastError ? `: ${(lastError as Error).message}` : ''}`);
}
