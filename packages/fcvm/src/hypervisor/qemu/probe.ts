/** Is a usable QEMU installed, and which version? */
import { errnoCode } from '../../errors.js';
import { checkKvm } from '../../sys/kvm.js';
import { run } from '../../util/subprocess.js';

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';

/**
 * Oldest QEMU this backend drives: microvm with `memory-backend`, virtio-serial-device and
 * `x-ignore-shared` are all older, but 6.2 (Ubuntu 22.04) is the oldest we have a reason to expect.
 */
export const MIN_QEMU_VERSION = { major: 6, minor: 2 } as const;

export interface QemuVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  readonly text: string;
}

export type QemuProbe =
  | { readonly available: true; readonly binary: string; readonly version: QemuVersion }
  | { readonly available: false; readonly binary: string; readonly reason: string };

/** Parses the first line of `qemu-system-x86_64 --version`: "QEMU emulator version 7.2.22 (Debian ...)". */
export function parseQemuVersion(output: string): QemuVersion | null {
  const match = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(output);
  if (match === null) return null;
  return {
    major: Number(match[1]),
    minor: Number(match[2]),
    patch: Number(match[3] ?? 0),
    text: `${match[1]}.${match[2]}.${match[3] ?? 0}`,
  };
}

export function isSupportedQemuVersion(version: QemuVersion): boolean {
  return (
    version.major > MIN_QEMU_VERSION.major ||
    (version.major === MIN_QEMU_VERSION.major && version.minor >= MIN_QEMU_VERSION.minor)
  );
}

export async function probeQemu(binary: string = DEFAULT_QEMU_BINARY): Promise<QemuProbe> {
  let stdout: string;
  try {
    stdout = await run([binary, '--version'], { errorCode: 'HYPERVISOR', timeoutMs: 10_000 });
  } catch (err) {
    const reason =
      errnoCode((err as Error).cause) === 'ENOENT'
        ? `${binary} is not installed (Debian: apt-get install qemu-system-x86)`
        : `${binary} --version failed: ${err instanceof Error ? err.message : String(err)}`;
    return { available: false, binary, reason };
  }
  const version = parseQemuVersion(stdout);
  if (version === null) return { available: false, binary, reason: `${binary} --version printed no QEMU version` };
  if (!isSupportedQemuVersion(version)) {
    const min = `${MIN_QEMU_VERSION.major}.${MIN_QEMU_VERSION.minor}`;
    return { available: false, binary, reason: `${binary} is QEMU ${version.text}; fcvm needs ${min} or newer` };
  }
  return { available: true, binary, version };
}

export { cpuHasVirtualization } from '../../sys/kvm.js';

/** Whether QEMU can run guests with KVM (sys/kvm.ts: the device works and the CPU offers vmx/svm). */
export async function kvmUsable(): Promise<boolean> {
  return checkKvm().usable;
}
