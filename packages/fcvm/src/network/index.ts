/**
 * `setupNetwork(request, runDir)`: the host side of one VM's network in the requested mode. The
 * caller registers `release()` on its cleanup stack at once and records `helpers` and `record` in
 * the registry (so a sweep after SIGKILL can end what the VM left).
 */
import { FcvmError, notImplemented } from '../errors.js';
import type { VmRecord } from '../state/record.js';
import { bridgedNames, releaseBridged, setupBridged } from './bridged.js';
import { setupRootless } from './rootless.js';
import type { NetworkRequest, VmNetwork } from './types.js';

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

export async function setupNetwork(request: NetworkRequest, runDir: string): Promise<VmNetwork> {
  switch (request.mode) {
    case 'rootless':
      if (process.getuid?.() !== 0) {
        throw new FcvmError(
          'NOT_IMPLEMENTED',
          'Running fcvm as a non-root user is not supported yet in this version; run it as root (rootless networking works there).',
        );
      }
      return setupRootless(request, runDir);
    case 'bridged':
      if (process.getuid?.() !== 0) {
        throw new FcvmError('NEEDS_ROOT', '--network bridged needs root; run fcvm as root or use --network rootless.');
      }
      return setupBridged(request);
    case 'routed':
      throw notImplemented('--network routed (IPv6)');
  }
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
