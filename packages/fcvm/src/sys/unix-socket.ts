/**
 * AF_UNIX stream sockets through koffi, for what Node's `net` cannot do: receive descriptors
 * (SCM_RIGHTS) and ask who the peer is (SO_PEERCRED). Every descriptor is close-on-exec and
 * non-blocking; callers wait with poll(2).
 *
 * Layouts (x86_64 and aarch64, LP64):
 *   sockaddr_un  family u16 @0, path char[108] @2
 *   msghdr       name @0, namelen u32 @8, iov @16, iovlen u64 @24, control @32, controllen u64 @40, flags i32 @48 (56 bytes)
 *   iovec        base @0, len @8 (16 bytes)
 *   cmsghdr      len u64 @0, level i32 @8, type i32 @12, data @16
 *   ucred        pid i32 @0, uid u32 @4, gid u32 @8
 */
import { EAGAIN, EINTR, SyscallError } from './errno.js';
import { bufferAddress, closeFd } from './fd.js';
import { lastErrno, libc } from './libc.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40;
const MSG_CTRUNC = 0x08;
const MSG_CMSG_CLOEXEC = 0x40000000;

/** sun_path is 108 bytes and must hold the terminating NUL. */
export const UNIX_PATH_MAX = 107;

const MSGHDR_SIZE = 56;
const CMSG_HEADER_SIZE = 16;
/** Room for 16 descriptors: a peer that sends more than one gets the extras closed, not leaked. */
const CONTROL_SIZE = CMSG_HEADER_SIZE + 16 * 4;

interface SocketFunctions {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  accept4(fd: number, addr: null, len: null, flags: number): number;
  recvmsg(fd: number, msg: Buffer, flags: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
}

let functions: SocketFunctions | undefined;

function sockets(): SocketFunctions {
  if (!functions) {
    const lib = libc();
    functions = {
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      bind: lib.func('int bind(int fd, void *addr, uint32_t len)'),
      listen: lib.func('int listen(int fd, int backlog)'),
      accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
      recvmsg: lib.func('intptr_t recvmsg(int fd, void *msg, int flags)'),
      getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
    } as SocketFunctions;
  }
  return functions;
}

function socketAddress(path: string): Buffer {
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.length > UNIX_PATH_MAX) {
    throw new SyscallError('bind', 0, `socket path is ${bytes.length} bytes, the limit is ${UNIX_PATH_MAX}`);
  }
  const addr = Buffer.alloc(2 + 108);
  addr.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

function newStreamSocket(): number {
  const fd = sockets().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError('socket', lastErrno());
  return fd;
}

/** A listening socket bound to `path` (which must not exist). */
export function listenUnix(path: string, backlog = 128): number {
  const addr = socketAddress(path);
  const fd = newStreamSocket();
  try {
    if (sockets().bind(fd, addr, addr.length) !== 0) throw new SyscallError('bind', lastErrno(), path);
    if (sockets().listen(fd, backlog) !== 0) throw new SyscallError('listen', lastErrno(), path);
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** Accepts one pending connection; undefined when none is pending. */
export function acceptUnix(listenFd: number): number | undefined {
  for (;;) {
    const fd = sockets().accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    const errno = lastErrno();
    if (errno === EINTR) continue;
    if (errno === EAGAIN) return undefined;
    throw new SyscallError('accept4', errno);
  }
}

export interface ReceivedMessage {
  /** Bytes received; 0 means the peer closed its end. */
  readonly length: number;
  /** Descriptors that came with the bytes (SCM_RIGHTS), already close-on-exec. */
  readonly fds: number[];
  /** The kernel had to drop descriptors (MSG_CTRUNC): more arrived than the control buffer holds. */
  readonly truncated: boolean;
}

/**
 * A reusable receiver for one socket: recvmsg(2) with a hand-built msghdr, without blocking.
 * Returns undefined when nothing is pending (EAGAIN).
 */
export class MessageReceiver {
  private readonly msghdr = Buffer.alloc(MSGHDR_SIZE);
  private readonly iovec = Buffer.alloc(16);
  private readonly control = Buffer.alloc(CONTROL_SIZE);
  readonly data: Buffer;

  constructor(capacity = 64 * 1024) {
    this.data = Buffer.alloc(capacity);
    this.iovec.writeBigUInt64LE(BigInt(bufferAddress(this.data)), 0);
    this.iovec.writeBigUInt64LE(BigInt(capacity), 8);
    this.msghdr.writeBigUInt64LE(BigInt(bufferAddress(this.iovec)), 16);
    this.msghdr.writeBigUInt64LE(1n, 24);
    this.msghdr.writeBigUInt64LE(BigInt(bufferAddress(this.control)), 32);
  }

  receive(fd: number): ReceivedMessage | undefined {
    this.msghdr.writeBigUInt64LE(BigInt(CONTROL_SIZE), 40);
    this.msghdr.writeInt32LE(0, 48);
    let length: number;
    for (;;) {
      length = sockets().recvmsg(fd, this.msghdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (length >= 0) break;
      const errno = lastErrno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return undefined;
      throw new SyscallError('recvmsg', errno);
    }
    const fds = this.descriptors();
    return { length, fds, truncated: (this.msghdr.readInt32LE(48) & MSG_CTRUNC) !== 0 };
  }

  private descriptors(): number[] {
    const controlLength = Number(this.msghdr.readBigUInt64LE(40));
    const fds: number[] = [];
    let offset = 0;
    while (offset + CMSG_HEADER_SIZE <= controlLength) {
      const cmsgLength = Number(this.control.readBigUInt64LE(offset));
      if (cmsgLength < CMSG_HEADER_SIZE) break;
      const level = this.control.readInt32LE(offset + 8);
      const type = this.control.readInt32LE(offset + 12);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let p = offset + CMSG_HEADER_SIZE; p + 4 <= offset + cmsgLength; p += 4) {
          fds.push(this.control.readInt32LE(p));
        }
      }
      offset += (cmsgLength + 7) & ~7;
    }
    return fds;
  }
}

export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** SO_PEERCRED: the process at the other end, as it was when it connected. */
export function peerCredentials(fd: number): PeerCredentials {
  const value = Buffer.alloc(12);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(12);
  if (sockets().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, value, length) !== 0) {
    throw new SyscallError('getsockopt(SO_PEERCRED)', lastErrno());
  }
  return { pid: value.readInt32LE(0), uid: value.readUInt32LE(4), gid: value.readUInt32LE(8) };
}
