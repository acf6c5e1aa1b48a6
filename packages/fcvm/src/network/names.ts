/** Interface and namespace names (IFNAMSIZ is 16 with the NUL) and per-VM MAC addresses. */
import { createHash } from 'node:crypto';

/** The first 8 characters of the VM id (`vm-1a2b3`), as the reference names its devices. */
export function shortId(vmId: string): string {
  return vmId.slice(0, 8);
}

/** A locally administered MAC (52:54:00 is QEMU's prefix) derived from the VM id. */
export function guestMacFor(vmId: string): string {
  const digest = createHash('sha256').update(vmId).digest();
  return ['52', '54', '00', ...[0, 1, 2].map((i) => digest[i]!.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The MAC of a bridged guest's gateway, derived from the guest's MAC: a clone's gateway (br0 in its
 * namespace) answers with the same MAC as the source VM's, so the guest's restored neighbour entry
 * stays right instead of sending to a MAC nobody has until it expires.
 */
export function gatewayMacFor(guestMac: string): string {
  return `52:54:01:${guestMac.split(':').slice(3).join(':')}`;
}
