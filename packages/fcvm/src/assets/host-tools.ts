/**
 * The host programs that building assets needs: where to find them, which Debian package provides
 * each (so a missing one is one sentence the user can act on), and running them with argv arrays.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { FcvmError } from '../errors.js';
import { run } from '../util/subprocess.js';

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
  lz4: 'lz4',
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
  /** Write stdout into this file (created or truncated) instead of returning it. */
  stdoutPath?: string;
  /**
   * A lock descriptor the tool inherits (as fd 3), so the lock outlives fcvm while the tool runs:
   * a tool orphaned by a killed fcvm then keeps the next build away from its scratch directory.
   */
  holdLockFd?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs `argv` (argv[0] an absolute path from requireHostTool) to completion and returns its stdout.
 * A non-zero exit becomes an ASSET_BUILD error naming the tool and its last stderr line; the tail
 * of stderr is in the error's context.
 */
export function runTool(argv: readonly string[], options: RunToolOptions = {}): Promise<string> {
  const { holdLockFd, ...rest } = options;
  return run(argv, {
    ...rest,
    errorCode: 'ASSET_BUILD',
    inheritFds: holdLockFd === undefined ? [] : [holdLockFd],
  });
}
