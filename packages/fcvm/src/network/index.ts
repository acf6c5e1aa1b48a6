/**
 * `setupNetwork(request, runDir)`: the host side of one VM's network in the requested mode. The
 * caller registers `release()` on its cleanup stack at once and records `helpers` and `record` in
 * the registry (so a sweep after SIGKILL can end what the VM left).
 */
import { FcvmError, notImplemented } from '../errors.js';
import { setupRootless } from './rootless.js';
import type { NetworkRequest, VmNetwork } from './types.js';

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
      throw notImplemented('--network bridged');
    case 'routed':
      throw notImplemented('--network routed (IPv6)');
  }
}
