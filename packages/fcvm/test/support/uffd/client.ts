/**
 * Test and benchmark support: compiles the C programs next to this file (gcc is a host dependency)
 * and runs fc-like-client, which plays Firecracker's part of the UFFD protocol.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SOURCE_DIR = new URL('.', import.meta.url).pathname;

/** Compiles `<name>.c` from this directory (fc-like-client, minimal-c-handler) into `outDir`; returns the binary. */
export async function compileC(name: string, outDir: string): Promise<string> {
  const binary = join(outDir, name);
  await run('gcc', ['-O2', '-Wall', '-pthread', '-o', binary, join(SOURCE_DIR, `${name}.c`)]);
  return binary;
}

/** A temp dir with the client compiled in it; `dispose()` removes it. */
export async function buildClient(): Promise<{ dir: string; client: string; dispose(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-uffd-test-'));
  const client = await compileC('fc-like-client', dir);
  return { dir, client, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface ClientOptions {
  readonly socket: string;
  readonly memory: string;
  readonly regions: readonly number[];
  readonly pageSize?: number;
  readonly touch?: 'seq' | 'random' | 'threads';
  readonly threads?: number;
  readonly dieAfter?: number;
  readonly removeCheck?: boolean;
  readonly latency?: boolean;
  /** Close the socket right after the handshake, as Firecracker did before 1.12. */
  readonly closeSocket?: boolean;
  readonly timeoutMs?: number;
}

export interface ClientReport {
  readonly ok: boolean;
  readonly pages: number;
  readonly elapsed_ns: number;
  readonly removed_pages: number;
  readonly p50_ns?: number;
  readonly p90_ns?: number;
  readonly p99_ns?: number;
  readonly max_ns?: number;
}

export interface ClientResult {
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  readonly report: ClientReport | undefined;
}

export function clientArgs(options: ClientOptions): string[] {
  const args = ['--socket', options.socket, '--memory', options.memory, '--regions', options.regions.join(',')];
  if (options.pageSize) args.push('--page-size', String(options.pageSize));
  if (options.touch) args.push('--touch', options.touch);
  if (options.threads) args.push('--threads', String(options.threads));
  if (options.dieAfter !== undefined) args.push('--die-after', String(options.dieAfter));
  if (options.removeCheck) args.push('--remove-check');
  if (options.latency) args.push('--latency');
  if (options.closeSocket) args.push('--close-socket');
  return args;
}

/** Runs the client to completion (killed after `timeoutMs`, default 60 s: a lost fault must not hang the tests). */
export function runClient(binary: string, options: ClientOptions): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, clientArgs(options), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop();
      resolve({
        pid: child.pid ?? -1,
        code,
        signal,
        stderr,
        report: line ? (JSON.parse(line) as ClientReport) : undefined,
      });
    });
  });
}

export interface HeldClient {
  readonly pid: number;
  /** Resolves once the client has touched and checked everything (its report line arrived). */
  readonly ready: Promise<ClientReport>;
  /** Lets the client exit; resolves with its exit code. */
  release(): Promise<number | null>;
}

/** A client that stays connected after its checks until released: a live clone for the server. */
export function startHeldClient(binary: string, options: ClientOptions): HeldClient {
  const child = spawn(binary, [...clientArgs(options), '--hold'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  const ready = new Promise<ClientReport>((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('\n')) resolve(JSON.parse(stdout.trim()) as ClientReport);
    });
    void exited.then((code) => reject(new Error(`the client exited (${code}) before its report: ${stderr}`)));
  });
  return {
    pid: child.pid ?? -1,
    ready,
    release: () => {
      child.stdin.end();
      return exited;
    },
  };
}
