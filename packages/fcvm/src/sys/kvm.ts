/**
 * Whether this host can run KVM guests: /dev/kvm opens read-write, speaks the stable API (12) and
 * lets us create a VM. Existing is not enough: containers often expose the node without access,
 * and a nested host may refuse KVM_CREATE_VM.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
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

/** Whether a /proc/cpuinfo text shows hardware virtualisation (Intel VT-x `vmx`, AMD-V `svm`). */
export function cpuHasVirtualization(cpuinfo: string): boolean {
  return /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo);
}

/**
 * On x86 the CPU must also offer vmx/svm: on nested hosts (this project's CI machines are
 * Firecracker guests) /dev/kvm passes every ioctl check, yet every KVM guest hangs in early boot.
 */
export function checkKvm(devicePath = '/dev/kvm', cpuinfoPath = '/proc/cpuinfo'): KvmCheck {
  if (process.arch === 'x64' || process.arch === 'ia32') {
    let cpuinfo = '';
    try {
      cpuinfo = readFileSync(cpuinfoPath, 'utf8');
    } catch {
      // unreadable: let the ioctls decide
    }
    if (cpuinfo !== '' && !cpuHasVirtualization(cpuinfo)) {
      return {
        usable: false,
        reason: 'the CPU offers no hardware virtualisation (no vmx or svm flag in /proc/cpuinfo)',
      };
    }
  }
  return checkKvmDevice(devicePath);
}

function checkKvmDevice(devicePath: string): KvmCheck {
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
