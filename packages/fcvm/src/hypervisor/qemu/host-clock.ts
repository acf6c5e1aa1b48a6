/**
 * The host TSC frequency for the guest's `tsc_early_khz=` (and whether `tsc=reliable` is safe). Under
 * TCG, microvm has neither HPET nor an ACPI PM timer, and the kernel's PIT calibration of the TSC fails
 * at random; the boot then hangs (measured: 3-6 of 20 boots). Telling the kernel the frequency skips
 * the calibration. The emulated TSC counts at the host's TSC rate, so with `tsc=reliable` the guest
 * keeps time by that number: it must be the TSC rate, not the current clock speed ("cpu MHz" in
 * /proc/cpuinfo, which frequency scaling moves).
 *
 * Sources, best first: the kernel's own figure in sysfs (`tsc_freq_khz`, on kernels that have it), the
 * kernel log (`tsc: Refined TSC clocksource calibration`, else `tsc: Detected ... MHz processor`; a
 * busy host's ring buffer loses it after a while), and last "cpu MHz": the boot calibration when the
 * host has no cpufreq driver, else the current speed, which is only good enough for the boot: then the
 * guest does not get `tsc=reliable`.
 */
import { closeSync, constants, existsSync, openSync, readFileSync, readSync } from 'node:fs';

export interface TscFrequency {
  readonly khz: number;
  /** The TSC rate itself (safe for `tsc=reliable`), not the current clock speed. */
  readonly exact: boolean;
}

/** kHz from the first "cpu MHz" line of a /proc/cpuinfo text, or null when there is none. */
export function parseCpuMhzAsKhz(cpuinfo: string): number | null {
  const match = /^cpu MHz\s*:\s*([\d.]+)\s*$/m.exec(cpuinfo);
  return match?.[1] === undefined ? null : mhzToKhz(match[1]);
}

/** The TSC kHz the kernel log reports: the refined calibration if there is one, else the detected rate. */
export function parseKernelLogTscKhz(kernelLog: string): number | null {
  const refined = /tsc: Refined TSC clocksource calibration: ([\d.]+) MHz/.exec(kernelLog);
  const detected = /tsc: Detected ([\d.]+) MHz (?:processor|TSC)/.exec(kernelLog);
  const mhz = refined?.[1] ?? detected?.[1];
  return mhz === undefined ? null : mhzToKhz(mhz);
}

function mhzToKhz(mhz: string): number | null {
  const khz = Math.round(Number(mhz) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : null;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The kernel's message buffer, read from /dev/kmsg without blocking (needs root or dmesg_restrict=0). */
function readKernelLog(): string | null {
  let fd: number;
  try {
    fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  const records: string[] = [];
  const buffer = Buffer.alloc(8192);
  try {
    // One record per read; EAGAIN once the buffer is read. Early boot records are all this needs.
    for (let i = 0; i < 4096; i++) {
      let bytes: number;
      try {
        bytes = readSync(fd, buffer, 0, buffer.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EPIPE') continue; // a record overwritten while reading
        break;
      }
      if (bytes === 0) break;
      records.push(buffer.toString('utf8', 0, bytes));
    }
  } finally {
    closeSync(fd);
  }
  return records.join('\n');
}

export function hostTscFrequency(): TscFrequency | null {
  const sysfs = Number(readText('/sys/devices/system/cpu/cpu0/tsc_freq_khz')?.trim());
  if (Number.isInteger(sysfs) && sysfs > 0) return { khz: sysfs, exact: true };
  const fromLog = parseKernelLogTscKhz(readKernelLog() ?? '');
  if (fromLog !== null) return { khz: fromLog, exact: true };
  const cpuMhz = parseCpuMhzAsKhz(readText('/proc/cpuinfo') ?? '');
  if (cpuMhz === null) return null;
  // Without a cpufreq driver "cpu MHz" is the kernel's boot calibration (cpu_khz), not a moving clock
  // speed; with one it is the current speed, which scaling moves away from the TSC rate.
  return { khz: cpuMhz, exact: !existsSync('/sys/devices/system/cpu/cpu0/cpufreq') };
}
