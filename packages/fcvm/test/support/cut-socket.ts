/**
 * Cuts a Unix socket connection that another process holds, as a network fault would: the
 * descriptor is copied out of that process (pidfd_getfd, root) and shut down in both directions,
 * which ends the connection for its owner too. Test support only.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { lastErrno, libc } from '../../src/sys/libc.js';

const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;
const SHUT_RDWR = 2;

/**
 * Inodes of the connected (not listening) Unix sockets bound to a path ending in `suffix`. An
 * accepted socket lives in the network namespace of the process that connected, so both `pid`'s
 * and ours are read.
 */
function connectedSocketInodes(pid: number, suffix: string): Set<string> {
  const inodes = new Set<string>();
  const tables = [`/proc/${pid}/net/unix`, '/proc/self/net/unix'].map((path) => readFileSync(path, 'utf8'));
  for (const line of tables.join('\n').split('\n')) {
    const fields = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; St 03 = connected.
    if (fields.length >= 8 && fields[5] === '03' && (fields[7] ?? '').endsWith(suffix)) inodes.add(fields[6] as string);
  }
  return inodes;
}

/** Shuts down every connection `pid` has accepted on its Unix socket whose path ends in `suffix`; returns how many. */
export function cutAcceptedUnixConnections(pid: number, suffix: string): number {
  const inodes = connectedSocketInodes(pid, suffix);
  const syscall = libc().func('long syscall(long number, long a, long b, long c)');
  const shutdown = libc().func('int shutdown(int fd, int how)');
  const close = libc().func('int close(int fd)');
  const pidfd = Number(syscall(SYS_PIDFD_OPEN, pid, 0, 0));
  if (pidfd < 0) throw new Error(`pidfd_open(${pid}) failed: errno ${lastErrno()}`);
  let cut = 0;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode === undefined || !inodes.has(inode)) continue;
      const copy = Number(syscall(SYS_PIDFD_GETFD, pidfd, Number(fd), 0));
      if (copy < 0) throw new Error(`pidfd_getfd(${pid}, ${fd}) failed: errno ${lastErrno()}`);
      shutdown(copy, SHUT_RDWR);
      close(copy);
      cut++;
    }
  } finally {
    close(pidfd);
  }
  return cut;
}
