/**
 * mmap(2)/munmap(2) and raw memory copies. Addresses are plain numbers: user-space
 * addresses fit in 2^47 (4-level paging) or 2^56 (5-level), so a JS number holds them exactly up to 2^53,
 * and every address that came from the kernel is checked against that limit.
 */

import { SyscallError } from './errno.js';
import { lastErrno, libc } from './libc.js';

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;

const MAP_FAILED = -1;

interface MmanFunctions {
  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number | bigint;
  munmap(addr: number, length: number): number;
  memcpy(dst: number, src: number, length: number): number | bigint;
  memset(dst: number, value: number, length: number): number | bigint;
}

let functions: MmanFunctions | undefined;

function mman(): MmanFunctions {
  if (!functions) {
    const lib = libc();
    // Pointers are declared as intptr_t so koffi hands them over as numbers (no BigInt boxing per call).
    functions = {
      mmap: lib.func('intptr_t mmap(intptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
      munmap: lib.func('int munmap(intptr_t addr, size_t length)'),
      memcpy: lib.func('intptr_t memcpy(intptr_t dst, intptr_t src, size_t n)'),
      memset: lib.func('intptr_t memset(intptr_t dst, int c, size_t n)'),
    } as MmanFunctions;
  }
  return functions;
}

/** Maps `length` bytes of `fd` (or anonymous memory with fd -1) and returns the address. */
export function mmap(length: number, prot: number, flags: number, fd = -1, offset = 0): number {
  const result = Number(mman().mmap(0, length, prot, flags, fd, offset));
  if (result === MAP_FAILED) throw new SyscallError('mmap', lastErrno(), `${length} bytes`);
  if (!Number.isSafeInteger(result)) throw new SyscallError('mmap', 0, 'address beyond 2^53');
  return result;
}

export function munmap(address: number, length: number): void {
  if (mman().munmap(address, length) !== 0) throw new SyscallError('munmap', lastErrno());
}

/** Copies between raw addresses (both must be valid mappings of this process). */
export function copyMemory(dst: number, src: number, length: number): void {
  mman().memcpy(dst, src, length);
}

export function fillMemory(dst: number, value: number, length: number): void {
  mman().memset(dst, value, length);
}
