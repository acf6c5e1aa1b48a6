/**
 * flock(2): advisory whole-file locks that the kernel releases when the holder dies, even by
 * SIGKILL, so a crashed fcvm never leaves a lock behind.
 */
import { closeSync, openSync } from 'node:fs';
import { poll } from '../util/poll.js';
import { lastErrno, libc } from './libc.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;

type FlockFn = (fd: number, op: number) => number;
let flockFn: FlockFn | undefined;

function flock(): FlockFn {
  flockFn ??= libc().func('int flock(int fd, int op)') as FlockFn;
  return flockFn;
}

export interface FileLock {
  readonly path: string;
  /**
   * The locked descriptor. A child process given this fd (spawn stdio) shares the lock: it stays
   * held until the child exits too, even if this process dies first.
   */
  readonly fd: number;
  release(): void;
}

/** Tries once; returns undefined when another holder has it. */
export function tryLockFile(path: string, mode: 'exclusive' | 'shared' = 'exclusive'): FileLock | undefined {
  const fd = openSync(path, 'a', 0o600);
  for (;;) {
    if (flock()(fd, (mode === 'exclusive' ? LOCK_EX : LOCK_SH) | LOCK_NB) === 0) {
      let released = false;
      return {
        path,
        fd,
        release() {
          if (released) return;
          released = true;
          flock()(fd, LOCK_UN);
          closeSync(fd);
        },
      };
    }
    const errno = lastErrno();
    if (errno === EINTR) continue;
    closeSync(fd);
    if (errno === EWOULDBLOCK) return undefined;
    throw new Error(`flock(${path}) failed with errno ${errno}`);
  }
}

/**
 * Waits for the lock without blocking the event loop: polls with a growing back-off (1 ms up to
 * 25 ms). Rejects after `timeoutMs`.
 */
export async function lockFile(
  path: string,
  options: { mode?: 'exclusive' | 'shared'; timeoutMs?: number } = {},
): Promise<FileLock> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return poll(async () => tryLockFile(path, options.mode) ?? undefined, {
    timeoutMs,
    delayMs: 1,
    maxDelayMs: 25,
    onTimeout: () => new Error(`timed out waiting for the lock ${path}`),
  });
}
