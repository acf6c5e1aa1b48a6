/**
 * Whether this host can run KVM guests: /dev/kvm opens read-write, speaks the stable API (12) and
 * lets us create a VM. Existing is not enough: containers often expose the node without access,
 * and a nested host may refuse KVM_CREATE_VM.
 */
import { closeSync, openSync } from 'node:fs';
import { errnoCode } from '../errors.js';
import { lastErrno, libc } from './libc.js';

const KVM_GET_API_VERSION = 0xae00;
const KVM_CREATE_VM = 0xae01;
const KVM_API_VERSION = 12;

type IoctlFn = (fd: number, request: number, arg: number) => number;
let ioctlFn: IoctlFn | undefined;

function ioctl(): IoctlFn {
  ioctlFn ??= libc().func('int ioctl(int fd, unsigned long request, unsigned long arg)') as IoctlFn;
  return ioctlFn;
}

export type KvmCheck = { readonly usable: true } | { readonly usable: false; readonly reason: string };

export function checkKvm(devicePath = '/dev/kvm'): KvmCheck {
  let fd: number;
  try {
    fd = openSync(devicePath, 'r+');
  } catch (err) {
    const code = errnoCode(err);
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'is not accessible to this user'
          : `cannot be opened (${code ?? String(err)})`;
    return { usable: false, reason: `${devicePath} ${why}` };
  }
  try {
    const api = ioctl()(fd, KVM_GET_API_VERSION, 0);
    if (api !== KVM_API_VERSION) {
      return { usable: false, reason: `${devicePath} reports KVM API version ${api}, not ${KVM_API_VERSION}` };
    }
    const vmFd = ioctl()(fd, KVM_CREATE_VM, 0);
    if (vmFd < 0) return { usable: false, reason: `KVM_CREATE_VM on ${devicePath} failed with errno ${lastErrno()}` };
    closeSync(vmFd);
    return { usable: true };
  } finally {
    closeSync(fd);
  }
}
