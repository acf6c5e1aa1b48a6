/**
 * The host programs that building assets needs: where to find them, which Debian package provides
 * each (so a missing one is one sentence the user can act on), and running them with argv arrays.
 */
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, openSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { FcvmError } from '../errors.js';

/** Every tool `fcvm setup` may run, and the Debian package that provides it. */
export const HOST_TOOL_PACKAGES = {
  'apt-get': 'apt',
  'apt-cache': 'apt',
  dpkg: 'dpkg',
  chroot: 'coreutils',
  mmdebstrap: 'mmdebstrap',
  'mkfs.ext4': 'e2fsprogs',
  busybox: 'busybox-static',
  xz: 'xz-utils',
  zstd: 'zstd',
  umount: 'mount',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-system-aarch64': 'qemu-system-arm',
  'qemu-img': 'qemu-utils',
} as const;

export type HostTool = keyof typeof HOST_TOOL_PACKAGES;

/** System directories are searched too: a non-root PATH often lacks /usr/sbin (mkfs.ext4). */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export function findHostTool(tool: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory: keep looking.
    }
  }
  return undefined;
}

/** The tool's absolute path, or MISSING_HOST_TOOL naming the package to install. */
export function requireHostTool(tool: HostTool, purpose: string): string {
  const path = findHostTool(tool);
  if (path !== undefined) return path;
  throw missingHostToolError(tool, purpose);
}

export function missingHostToolError(tool: HostTool, purpose: string): FcvmError {
  const pkg = HOST_TOOL_PACKAGES[tool];
  return new FcvmError(
    'MISSING_HOST_TOOL',
    `${purpose} needs \`${tool}\`, which is not installed: install the Debian package ${pkg} (apt-get install ${pkg}).`,
    { context: { tool, package: pkg } },
  );
}

/** NEEDS_ROOT unless this process runs as root. */
export function requireRoot(what: string): void {
  if (process.getuid?.() === 0) return;
  throw new FcvmError('NEEDS_ROOT', `${what} needs root: run it as root (sudo fcvm setup).`);
}

export interface RunToolOptions {
  cwd?: string;
  signal?: AbortSignal;
  /** Called with each complete line the tool writes on stdout or stderr (progress, debug logging). */
  onLine?: (line: string) => void;
  /** Keep stdout and return it (otherwise it is only passed to onLine). */
  captureStdout?: boolean;
  /** Write stdout into this file (created or truncated) instead. */
  stdoutPath?: string;
  /**
   * A lock descriptor the tool inherits (as fd 3), so the lock outlives fcvm while the tool runs:
   * a tool orphaned by a killed fcvm then keeps the next build away from its scratch directory.
   */
  holdLockFd?: number;
  env?: NodeJS.ProcessEnv;
}

const STDERR_TAIL_LINES = 20;

/**
 * Runs `argv` (argv[0] an absolute path from requireHostTool) to completion. A non-zero exit
 * becomes an ASSET_BUILD error naming the tool and its last stderr line; the tail of stderr is in
 * the error's context.
 */
export function runTool(argv: readonly string[], options: RunToolOptions = {}): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runTool needs a program');
  return new Promise((resolve, reject) => {
    const stdoutFd = options.stdoutPath === undefined ? undefined : openSync(options.stdoutPath, 'w', 0o600);
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe', ...(options.holdLockFd === undefined ? [] : [options.holdLockFd])],
      signal: options.signal,
    });
    if (stdoutFd !== undefined) closeSync(stdoutFd);
    const stdoutChunks: Buffer[] = [];
    const stderrTail: string[] = [];
    const splitLines = (onComplete: (line: string) => void) => {
      let pending = '';
      return (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) onComplete(line);
      };
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      if (options.captureStdout) stdoutChunks.push(chunk);
    });
    child.stdout?.on(
      'data',
      splitLines((line) => options.onLine?.(line)),
    );
    child.stderr?.on(
      'data',
      splitLines((line) => {
        stderrTail.push(line);
        if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
        options.onLine?.(line);
      }),
    );
    child.on('error', (err) => {
      reject(new FcvmError('ASSET_BUILD', `Could not run ${file}: ${err.message}.`, { cause: err, context: { argv } }));
    });
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve(Buffer.concat(stdoutChunks).toString('utf8'));
        return;
      }
      const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      const lastLine = stderrTail.filter((l) => l.trim() !== '').at(-1);
      reject(
        new FcvmError('ASSET_BUILD', `${file} ${how}${lastLine ? `: ${lastLine.trim()}` : '.'}`, {
          context: { argv, stderr: stderrTail.join('\n') },
        }),
      );
    });
  });
}
