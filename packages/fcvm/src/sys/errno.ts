/**
 * errno values fcvm reacts to (Linux, the same on x86_64 and aarch64), and the error type that
 * carries a failed system call's errno up to the code that decides what it means.
 */
export const EINTR = 4;
export const ENOENT = 2;
export const ESRCH = 3;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EEXIST = 17;
export const EINVAL = 22;

export class SyscallError extends Error {
  readonly syscall: string;
  readonly errno: number;

  constructor(syscall: string, errno: number, detail?: string) {
    super(`${syscall}${detail ? ` (${detail})` : ''} failed with errno ${errno}`);
    this.name = 'SyscallError';
    this.syscall = syscall;
    this.errno = errno;
  }
}
