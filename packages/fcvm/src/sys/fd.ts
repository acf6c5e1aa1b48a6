/**
 * Plain file-descriptor calls for descriptors Node does not own (sockets and userfaultfds made
 * through koffi): close, read, write, poll and eventfd.
 */
import { EINTR, SyscallError } from './errno.js';
import { koffi, lastErrno, libc } from './libc.js';

export const POLLIN = 0x001;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
const POLLFD_SIZE = 8;

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

interface FdFunctions {
  close(fd: number): number;
  read(fd: number, buf: Buffer, count: number): number;
  write(fd: number, buf: Buffer, count: number): number;
  poll(fds: Buffer, nfds: number, timeoutMs: number): number;
  eventfd(initval: number, flags: number): number;
}

let functions: FdFunctions | undefined;

function fdFunctions(): FdFunctions {
  if (!functions) {
    const lib = libc();
    functions = {
      close: lib.func('int close(int fd)'),
      read: lib.func('intptr_t read(int fd, void *buf, size_t count)'),
      write: lib.func('intptr_t write(int fd, void *buf, size_t count)'),
      poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
      eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    } as FdFunctions;
  }
  return functions;
}

/** Closes a descriptor; EINTR still closes it on Linux, so only a bad descriptor is an error. */
export function closeFd(fd: number): void {
  if (fdFunctions().close(fd) !== 0 && lastErrno() !== EINTR) throw new SyscallError('close', lastErrno());
}

/** read(2) into `buf`. Returns the byte count, or -errno (callers decide what EAGAIN means). */
export function readFd(fd: number, buf: Buffer, count = buf.length): number {
  const n = fdFunctions().read(fd, buf, count);
  return n >= 0 ? n : -lastErrno();
}

export function writeFd(fd: number, buf: Buffer): number {
  const n = fdFunctions().write(fd, buf, buf.length);
  return n >= 0 ? n : -lastErrno();
}

/** A reusable `struct pollfd[]`: set descriptors once, call `wait()`, read `revents(i)`. */
export class PollSet {
  private readonly buffer: Buffer;
  readonly size: number;

  constructor(fds: readonly number[]) {
    this.size = fds.length;
    this.buffer = Buffer.alloc(POLLFD_SIZE * fds.length);
    fds.forEach((fd, index) => {
      this.setFd(index, fd);
    });
  }

  /** A negative descriptor is ignored by poll(2): the way to drop one entry. */
  setFd(index: number, fd: number, events = POLLIN): void {
    this.buffer.writeInt32LE(fd, index * POLLFD_SIZE);
    this.buffer.writeInt16LE(events, index * POLLFD_SIZE + 4);
    this.buffer.writeInt16LE(0, index * POLLFD_SIZE + 6);
  }

  fd(index: number): number {
    return this.buffer.readInt32LE(index * POLLFD_SIZE);
  }

  revents(index: number): number {
    return this.buffer.readUInt16LE(index * POLLFD_SIZE + 6);
  }

  /** Blocks this thread for up to `timeoutMs` (-1: forever). Returns the number of ready entries (0: timeout). */
  wait(timeoutMs: number): number {
    for (let i = 0; i < this.size; i++) this.buffer.writeInt16LE(0, i * POLLFD_SIZE + 6);
    for (;;) {
      const n = fdFunctions().poll(this.buffer, this.size, timeoutMs);
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno !== EINTR) throw new SyscallError('poll', errno);
    }
  }
}

/** A non-blocking, close-on-exec eventfd: a level-triggered "wake everyone" flag once signalled. */
export function createEventFd(): number {
  const fd = fdFunctions().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw new SyscallError('eventfd', lastErrno());
  return fd;
}

export function signalEventFd(fd: number): void {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  const n = writeFd(fd, one);
  if (n !== 8) throw new SyscallError('write(eventfd)', -n);
}

/** Address of a Buffer's bytes, for system calls that take raw pointers inside structs. */
export function bufferAddress(buf: Buffer): number {
  return Number(koffi.address(buf));
}
