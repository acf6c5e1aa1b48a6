/**
 * The host TSC frequency for the guest's `tsc_early_khz=`. Under TCG, microvm has neither HPET nor an
 * ACPI PM timer, and the kernel's PIT calibration of the TSC fails at random; the boot then hangs
 * (measured: 3-6 of 20 boots). Telling the kernel the frequency skips the calibration.
 */
import { readFileSync } from 'node:fs';

/** kHz from the first "cpu MHz" line of a /proc/cpuinfo text, or null when there is none. */
export function parseCpuMhzAsKhz(cpuinfo: string): number | null {
  const match = /^cpu MHz\s*:\s*([\d.]+)\s*$/m.exec(cpuinfo);
  if (match?.[1] === undefined) return null;
  const khz = Math.round(Number(match[1]) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : null;
}

export function hostTscKhz(): number | null {
  return parseCpuMhzAsKhz(readFileSync('/proc/cpuinfo', 'utf8'));
}
