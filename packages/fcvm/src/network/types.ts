/**
 * One interface for every network mode: `setupNetwork(request)` (index.ts) gives a VM its host side
 * (namespace, tap, forwarding) and says how the guest must configure itself. The same call serves a
 * clone: it passes the snapshot's guest identity and gets a new host-side identity around it.
 */
import type { NetworkPlan } from '@fcvm/protocol';
import type { NetSpec } from '../hypervisor/types.js';
import type { Registry } from '../state/registry.js';

export const NETWORK_MODES = ['rootless', 'bridged', 'routed'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** `--publish [IP:]HOST:GUEST[/tcp|udp]`; `hostIp` null lets the mode choose the address. */
export interface PublishedPort {
  readonly hostIp: string | null;
  readonly hostPort: number;
  readonly guestPort: number;
  readonly protocol: 'tcp' | 'udp';
}

/** What the guest keeps across a snapshot: a clone must present the same device and address. */
export interface GuestIdentity {
  /** CIDR, e.g. `10.0.2.100/24`. */
  readonly address: string;
  readonly gateway: string;
  readonly mac: string;
}

export interface NetworkRequest {
  readonly mode: NetworkMode;
  readonly vmId: string;
  readonly publish: readonly PublishedPort[];
  /** The guest's resolvers (settings.ts decides: config, FCVM_DNS, else the host's). */
  readonly dnsServers: readonly string[];
  /** A clone: the snapshot's guest identity, kept as it is behind a new host side. */
  readonly clone?: GuestIdentity | null;
  /** Holds the VM's record: the loopback address is allocated against the live records. */
  readonly registry: Registry;
}

/** A helper process the sweeper ends if fcvm dies without cleaning up. */
export interface HelperProcess {
  readonly pid: number;
  readonly start_time: number;
  readonly role: string;
}

/** The `config.network` fields of the registry record (what `fcvm ls` shows). */
export interface NetworkRecord {
  readonly mode: NetworkMode;
  readonly tap_device: string;
  readonly guest_mac: string;
  readonly guest_ip: string;
  readonly host_ip: string | null;
  readonly loopback_ip: string | null;
  readonly namespace_name: string | null;
}

export interface VmNetwork {
  readonly mode: NetworkMode;
  /** Where the VMM runs (`/proc/PID/ns/net` of the holder, or `/run/netns/NAME`). */
  readonly netnsPath: string;
  readonly tap: NetSpec;
  /** What the agent applies to eth0. */
  readonly plan: NetworkPlan;
  /** Where users reach published ports (`fcvm ls` HOST_ADDR). */
  readonly hostAddress: string;
  /** Published ports with the address each is bound to. */
  readonly ports: readonly (PublishedPort & { readonly hostIp: string })[];
  readonly helpers: readonly HelperProcess[];
  readonly record: NetworkRecord;
  /** Undoes everything the setup did; idempotent, tolerates parts already gone. */
  release(): Promise<void>;
}
