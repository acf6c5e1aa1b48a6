/**
 * Firecracker releases and what each one understands. Firecracker rejects request bodies with
 * fields it does not know (400, "unknown field"), so every optional field we send is gated on the
 * version of the binary in use (firecracker-protocols.md §9 is the source of the table below).
 */
import { FcvmError } from '../../errors.js';

export interface FirecrackerVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

/**
 * Oldest release fcvm drives. v1.10 is the first that re-delivers the vsock transport reset to a
 * restored guest (older guests hang on their vsock connections after a restore) and that tells the
 * guest's kvm-clock about pauses.
 */
export const MIN_FIRECRACKER_VERSION: FirecrackerVersion = { major: 1, minor: 10, patch: 0 };

/** v1.16.1 fixes guest-to-host vsock connections after a restore; older releases work with a warning. */
export const RECOMMENDED_FIRECRACKER_VERSION: FirecrackerVersion = { major: 1, minor: 16, patch: 1 };

export function parseVersion(text: string): FirecrackerVersion | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  if (!match) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]) };
}

/** Parses the output of `firecracker --version`: `Firecracker v1.16.1` (a blank line may follow). */
export function parseVersionOutput(output: string): FirecrackerVersion | undefined {
  const firstLine = output.split('\n').find((line) => line.trim() !== '') ?? '';
  const match = /^Firecracker v(\d+\.\d+\.\d+)/.exec(firstLine.trim());
  return match ? parseVersion(match[1]!) : undefined;
}

export function formatVersion(version: FirecrackerVersion): string {
  return `${version.major}.${version.minor}.${version.patch}`;
}

export function compareVersions(a: FirecrackerVersion, b: FirecrackerVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

export function isAtLeast(version: FirecrackerVersion, minimum: FirecrackerVersion): boolean {
  return compareVersions(version, minimum) >= 0;
}

/** Optional request fields and behaviours that appeared after the minimum version. */
export type FirecrackerFeature =
  | 'networkOverrides'
  | 'trackDirtyPagesOnLoad'
  | 'imdsCompat'
  | 'balloonFreePage'
  | 'vsockOverride'
  | 'networkMtu';

const FEATURE_SINCE: Record<FirecrackerFeature, FirecrackerVersion> = {
  /** `network_overrides` in /snapshot/load. */
  networkOverrides: { major: 1, minor: 12, patch: 0 },
  /** `track_dirty_pages` in /snapshot/load; older releases only know `enable_diff_snapshots`. */
  trackDirtyPagesOnLoad: { major: 1, minor: 13, patch: 0 },
  /** `imds_compat` in /mmds/config. */
  imdsCompat: { major: 1, minor: 13, patch: 0 },
  /** `free_page_hinting` and `free_page_reporting` in /balloon. */
  balloonFreePage: { major: 1, minor: 14, patch: 0 },
  /** `vsock_override` in /snapshot/load. */
  vsockOverride: { major: 1, minor: 16, patch: 0 },
  /** `mtu` in /network-interfaces. */
  networkMtu: { major: 1, minor: 16, patch: 0 },
};

export function featureSince(feature: FirecrackerFeature): FirecrackerVersion {
  return FEATURE_SINCE[feature];
}

export function supports(version: FirecrackerVersion, feature: FirecrackerFeature): boolean {
  return isAtLeast(version, FEATURE_SINCE[feature]);
}

/** Refuses releases fcvm cannot drive correctly, in one sentence that says what to do. */
export function assertSupportedVersion(version: FirecrackerVersion, binary: string): void {
  if (isAtLeast(version, MIN_FIRECRACKER_VERSION)) return;
  throw new FcvmError(
    'HYPERVISOR',
    `Firecracker ${formatVersion(version)} at ${binary} is too old: fcvm needs v${formatVersion(MIN_FIRECRACKER_VERSION)} or newer (v${formatVersion(RECOMMENDED_FIRECRACKER_VERSION)} recommended), so install a newer release or pick one with --hypervisor qemu.`,
    { context: { binary, version: formatVersion(version) } },
  );
}
