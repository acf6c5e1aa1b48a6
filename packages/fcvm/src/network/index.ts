/**
 * `setupNetwork(request, runDir)`: the host side of one VM's network in the requested mode. The
 * caller registers `release()` on its cleanup stack at once and records `helpers` and `record` in
 * the registry (so a sweep after SIGKILL can end what the VM left).
 */
import { FcvmError, notImplemented } from '../errors.js';
import type { VmRecord } from '../state/record.js';
import { bridgedNames, releaseBridged, setupBridged } from './bridged.js';
import { setupBridgedClone } from './bridged-clone.js';
import { setupRootless } from './rootless.js';
import type { NetworkMode, NetworkRequest, VmNetwork } from './types.js';

export { publishedHealthUrl } from './health-url.js';
export { guestDnsServers, guestNtpSources, proxyEnvironment } from './settings.js';
export type {
  GuestIdentity,
  HelperProcess,
  NetworkMode,
  NetworkRecord,
  NetworkRequest,
  PublishedPort,
  VmNetwork,
} from './types.js';

/** Modes this host or version cannot do, refused before anything is built or booted. */
export function refuseUnsupportedNetwork(mode: NetworkMode): void {
  const root = process.getuid?.() === 0;
  if (mode === 'routed') throw notImplemented('--network routed (IPv6)');
  if (mode === 'bridged' && !root) {
    throw new FcvmError('NEEDS_ROOT', '--network bridged needs root; run fcvm as root or use --network rootless.');
  }
  if (!root) {
    throw new FcvmError(
      'NOT_IMPLEMENTED',
      'Running fcvm as a non-root user is not supported yet in this version; run it as root (rootless networking works there).',
    );
  }
}

export async function setupNetwork(request: NetworkRequest, runDir: string): Promise<VmNetwork> {
  refuseUnsupportedNetwork(request.mode);
  if (request.mode === 'bridged')
    return request.clone ? setupBridgedClone(request, request.clone) : setupBridged(request);
  return setupRootless(request, runDir);
}

/**
 * What a dead owner's network left that no process holds: a bridged VM's named namespace, veth and
 * nftables table (a rootless network dies with its holder). Tried for every stale record, since the
 * owner may have died before it recorded the mode.
 */
export async function releaseNetworkLeftovers(record: VmRecord): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await releaseBridged(bridgedNames(record.vm_id));
}
