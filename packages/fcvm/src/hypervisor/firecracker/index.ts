/**
 * The Firecracker backend. Other code uses `createFirecracker()` to get a `Hypervisor` and
 * `probeFirecracker()` to decide whether `--hypervisor auto` can pick it.
 */
import { join } from 'node:path';
import type { DataDir } from '../../data-dir.js';
import { FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import type { Hypervisor } from '../types.js';
import { resolveFirecrackerBinary } from './binary.js';
import { FirecrackerHypervisor } from './hypervisor.js';
import { assertSupportedVersion, formatVersion, isAtLeast, RECOMMENDED_FIRECRACKER_VERSION } from './version.js';
import { detectFirecrackerVersion } from './version-probe.js';

export { FirecrackerApiClient, FirecrackerApiError } from './api-client.js';
export { FirecrackerHypervisor } from './hypervisor.js';
export { type FirecrackerProbe, probeFirecracker } from './probe.js';
export { type FirecrackerVersion, MIN_FIRECRACKER_VERSION } from './version.js';
export { FirecrackerVm } from './vm-handle.js';

export interface CreateFirecrackerOptions {
  /** Path of the firecracker binary; else FCVM_FIRECRACKER_BIN, the config's binary, then PATH. */
  readonly binary?: string | undefined;
  /** `firecracker.binary` from the config file. */
  readonly configuredBinary?: string | undefined;
  /** Holds the version cache (state/firecracker-versions.cache). */
  readonly dataDir: DataDir;
  readonly env?: NodeJS.ProcessEnv;
  /** How long to wait for a new Firecracker's API socket (default 10 s). */
  readonly socketWaitMs?: number;
}

/** Where `firecracker --version` answers are remembered between runs (not `.json`: state/ holds registry records). */
export function versionCacheFile(dataDir: DataDir): string {
  return join(dataDir.state, 'firecracker-versions.cache');
}

const warnedOldBinaries = new Set<string>();

export async function createFirecracker(options: CreateFirecrackerOptions): Promise<Hypervisor> {
  const binary = resolveFirecrackerBinary({
    explicit: options.binary,
    configured: options.configuredBinary,
    ...(options.env ? { env: options.env } : {}),
  });
  if (!binary.found) throw new FcvmError('HYPERVISOR', `Firecracker cannot be used: ${binary.reason}.`);
  const version = await detectFirecrackerVersion(binary.path, { cacheFile: versionCacheFile(options.dataDir) });
  assertSupportedVersion(version, binary.path);
  if (!isAtLeast(version, RECOMMENDED_FIRECRACKER_VERSION) && !warnedOldBinaries.has(binary.path)) {
    warnedOldBinaries.add(binary.path);
    log.warn(
      `Firecracker ${formatVersion(version)} drops guest-to-host vsock connections after some restores; v${formatVersion(RECOMMENDED_FIRECRACKER_VERSION)} or newer is recommended.`,
    );
  }
  return new FirecrackerHypervisor({
    binary: binary.path,
    version,
    ...(options.socketWaitMs === undefined ? {} : { socketWaitMs: options.socketWaitMs }),
  });
}
