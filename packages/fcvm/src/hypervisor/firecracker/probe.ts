/**
 * Can this host run Firecracker VMs? `--hypervisor auto` asks this and falls back to QEMU with the
 * reason when the answer is no.
 */
import { checkKvm } from '../../sys/kvm.js';
import { type BinaryLookup, resolveFirecrackerBinary } from './binary.js';
import { type FirecrackerVersion, formatVersion, isAtLeast, MIN_FIRECRACKER_VERSION } from './version.js';
import { detectFirecrackerVersion } from './version-probe.js';

export type FirecrackerProbe =
  | { readonly usable: true; readonly binary: string; readonly version: FirecrackerVersion }
  | { readonly usable: false; readonly reason: string };

export interface ProbeOptions extends BinaryLookup {
  /** Version cache file (see version-probe.ts); omit to keep it in memory. */
  readonly versionCacheFile?: string;
  /** For tests: the KVM device to check. */
  readonly kvmDevice?: string;
}

export async function probeFirecracker(options: ProbeOptions = {}): Promise<FirecrackerProbe> {
  const binary = resolveFirecrackerBinary(options);
  if (!binary.found) return { usable: false, reason: binary.reason };
  const kvm = checkKvm(options.kvmDevice);
  if (!kvm.usable) return { usable: false, reason: kvm.reason };
  let version: FirecrackerVersion;
  try {
    version = await detectFirecrackerVersion(binary.path, { cacheFile: options.versionCacheFile });
  } catch (err) {
    return { usable: false, reason: (err as Error).message.replace(/\.$/, '') };
  }
  if (!isAtLeast(version, MIN_FIRECRACKER_VERSION)) {
    return {
      usable: false,
      reason: `firecracker ${formatVersion(version)} at ${binary.path} is older than the minimum v${formatVersion(MIN_FIRECRACKER_VERSION)}`,
    };
  }
  return { usable: true, binary: binary.path, version };
}
