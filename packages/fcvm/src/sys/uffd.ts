/**
 * userfaultfd(2) and its ioctls (linux/userfaultfd.h), through koffi.
 *
 * Layouts (little-endian, natural alignment; see reference firecracker-protocols §4.5):
 *   uffdio_api       api u64 @0, features u64 @8, ioctls u64 @16 (out)                 24 bytes
 *   uffdio_range     start u64 @0, len u64 @8                                          16 bytes
 *   uffdio_register  range @0, mode u64 @16, ioctls u64 @24 (out)                      32 bytes
 *   uffdio_copy      dst @0, src @8, len @16, mode @24, copy s64 @32 (out)             40 bytes
 *   uffdio_zeropage  range @0, mode @16, zeropage s64 @24 (out)                        32 bytes
 *   uffd_msg         event u8 @0; pagefault flags @8, address @16; remove start @8, end @16  (32 bytes)
 *
 * The fault path (read events, copy a page) reuses preallocated buffers: no allocation per fault.
 */
import { EINTR, SyscallError } from './errno.js';
import { lastErrno, libc } from './libc.js';

export const UFFD_API = 0xaa;
export const UFFDIO_API = 0xc018aa3f;
export const UFFDIO_REGISTER = 0xc020aa00;
export const UFFDIO_UNREGISTER = 0x8010aa01;
export const UFFDIO_WAKE = 0x8010aa02;
export const UFFDIO_COPY = 0xc028aa03;
export const UFFDIO_ZEROPAGE = 0xc020aa04;

export const UFFD_EVENT_PAGEFAULT = 0x12;
export const UFFD_EVENT_FORK = 0x13;
export const UFFD_EVENT_REMAP = 0x14;
export const UFFD_EVENT_REMOVE = 0x15;
export const UFFD_EVENT_UNMAP = 0x16;

export const UFFD_PAGEFAULT_FLAG_WRITE = 1;
export const UFFD_FEATURE_EVENT_REMOVE = 1 << 3;
export const UFFDIO_REGISTER_MODE_MISSING = 1;

export const UFFD_MSG_SIZE = 32;

const SYS_USERFAULTFD: Partial<Record<NodeJS.Architecture, number>> = { x64: 323, arm64: 282 };
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

type Ioctl = (fd: number, request: number, arg: Buffer) => number;
type Syscall = (number: number, flags: number) => number;

let ioctlFn: Ioctl | undefined;
let syscallFn: Syscall | undefined;

function ioctl(): Ioctl {
  // ioctl is variadic in C; on LP64 an (int, unsigned long, pointer) call is passed the same way.
  ioctlFn ??= libc().func('int ioctl(int fd, unsigned long request, void *arg)') as Ioctl;
  return ioctlFn;
}

function writeU64(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset + 4) * 0x1_0000_0000 + buf.readUInt32LE(offset);
}

function readS64(buf: Buffer, offset: number): number {
  return buf.readInt32LE(offset + 4) * 0x1_0000_0000 + buf.readUInt32LE(offset);
}

/** ioctl that retries EINTR; returns 0 or the errno. */
function uffdIoctl(fd: number, request: number, arg: Buffer): number {
  for (;;) {
    if (ioctl()(fd, request, arg) === 0) return 0;
    const errno = lastErrno();
    if (errno !== EINTR) return errno;
  }
}

/** A new userfaultfd (close-on-exec, non-blocking), as a VMM would create it. Used by tests and tools. */
export function createUserfaultfd(): number {
  const number = SYS_USERFAULTFD[process.arch];
  if (number === undefined) throw new SyscallError('userfaultfd', 0, `unsupported architecture ${process.arch}`);
  syscallFn ??= libc().func('long syscall(long number, long flags)') as Syscall;
  const fd = syscallFn(number, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw new SyscallError('userfaultfd', lastErrno());
  return fd;
}

/** UFFDIO_API handshake; returns the features the kernel reports. Only the creator of the fd calls it, once. */
export function uffdApi(fd: number, features: number): number {
  const arg = Buffer.alloc(24);
  writeU64(arg, 0, UFFD_API);
  writeU64(arg, 8, features);
  const errno = uffdIoctl(fd, UFFDIO_API, arg);
  if (errno !== 0) throw new SyscallError('UFFDIO_API', errno);
  return readU64(arg, 8);
}

/** Registers [start, start+length) in MISSING mode; returns the ioctls allowed on the range. */
export function uffdRegister(fd: number, start: number, length: number): number {
  const arg = Buffer.alloc(32);
  writeU64(arg, 0, start);
  writeU64(arg, 8, length);
  writeU64(arg, 16, UFFDIO_REGISTER_MODE_MISSING);
  const errno = uffdIoctl(fd, UFFDIO_REGISTER, arg);
  if (errno !== 0) throw new SyscallError('UFFDIO_REGISTER', errno);
  return readU64(arg, 24);
}

/*
 * Field readers for the i-th `struct uffd_msg` in a buffer filled by read(2). The fault path uses
 * these so that it allocates nothing per event.
 */
export function uffdMessageEvent(buf: Buffer, index: number): number {
  return buf.readUInt8(index * UFFD_MSG_SIZE);
}

export function uffdFaultAddress(buf: Buffer, index: number): number {
  return readU64(buf, index * UFFD_MSG_SIZE + 16);
}

export function uffdRemoveStart(buf: Buffer, index: number): number {
  return readU64(buf, index * UFFD_MSG_SIZE + 8);
}

export function uffdRemoveEnd(buf: Buffer, index: number): number {
  return readU64(buf, index * UFFD_MSG_SIZE + 16);
}

/**
 * The ioctls a fault handler issues on one userfaultfd, with their argument buffers allocated
 * once. Each method returns 0 or the errno, because EEXIST and EAGAIN are answers, not failures.
 */
export class UffdOperations {
  private readonly copyArg = Buffer.alloc(40);
  private readonly zeroArg = Buffer.alloc(32);
  private readonly rangeArg = Buffer.alloc(16);

  constructor(readonly fd: number) {}

  /** UFFDIO_COPY `length` bytes from `src` (an address in this process) to `dst` (in the faulting process), then wake. */
  copy(dst: number, src: number, length: number): number {
    const arg = this.copyArg;
    writeU64(arg, 0, dst);
    writeU64(arg, 8, src);
    writeU64(arg, 16, length);
    writeU64(arg, 24, 0);
    writeU64(arg, 32, 0);
    return uffdIoctl(this.fd, UFFDIO_COPY, arg);
  }

  /** Bytes the last copy() moved (it can be partial when it failed with EAGAIN). */
  lastCopied(): number {
    return Math.max(0, readS64(this.copyArg, 32));
  }

  /** UFFDIO_ZEROPAGE: maps zero pages (normal anonymous memory only, not hugetlbfs). */
  zeroPage(start: number, length: number): number {
    const arg = this.zeroArg;
    writeU64(arg, 0, start);
    writeU64(arg, 8, length);
    writeU64(arg, 16, 0);
    writeU64(arg, 24, 0);
    return uffdIoctl(this.fd, UFFDIO_ZEROPAGE, arg);
  }

  /** UFFDIO_WAKE: wakes threads waiting on a range that something else already filled. */
  wake(start: number, length: number): number {
    writeU64(this.rangeArg, 0, start);
    writeU64(this.rangeArg, 8, length);
    return uffdIoctl(this.fd, UFFDIO_WAKE, this.rangeArg);
  }
}
