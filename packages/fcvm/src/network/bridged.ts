/**
 * Bridged mode (root): per VM a named namespace `fcvm-<id8>` with the tap and one end of a veth
 * pair on a bridge, so the guest owns the .2 of a /30 in 172.30.0.0/16 and its gateway is the
 * host's end (.1). The host NATs the guest out of its default interface and DNATs published ports
 * arriving for any local address (the host's own, 127.0.0.1 with route_localnet) to the guest. All
 * host rules live in one nftables table per VM, `ip fcvm-<id8>`, so teardown (and the sweep after a
 * SIGKILL) deletes exactly what was added by deleting that table.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FcvmError } from '../errors.js';
import type { Registry } from '../state/registry.js';
import { lockFile } from '../sys/flock.js';
import { ipBatchIn, runNetworkCommand } from './command.js';
import { gatewayMacFor, guestMacFor, shortId } from './names.js';
import { assertPortsFree } from './ports.js';
import type { NetworkRecord, NetworkRequest, PublishedPort, VmNetwork } from './types.js';

const SUBNET_LOCK_NAME = 'bridged-subnet.lock';
const SUBNETS = 16_384;

export function bridgedNames(vmId: string): { namespace: string; hostVeth: string; nsVeth: string; table: string } {
  const id = shortId(vmId);
  return { namespace: `fcvm-${id}`, hostVeth: `veth0-${id}`, nsVeth: `veth1-${id}`, table: `fcvm-${id}` };
}

/** The n-th /30 of 172.30.0.0/16: network, host (.1) and guest (.2) addresses. */
export function subnetAddresses(n: number): { host: string; guest: string } {
  const base = n * 4;
  const third = Math.floor(base / 256);
  const fourth = base % 256;
  return { host: `172.30.${third}.${fourth + 1}`, guest: `172.30.${third}.${fourth + 2}` };
}

export function subnetIndexFor(vmId: string): number {
  let hash = 0;
  for (const char of vmId) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return hash % SUBNETS;
}

async function hostIpv4Addresses(): Promise<Set<string>> {
  const out = await runNetworkCommand(['ip', '-o', '-4', 'address', 'show']);
  return new Set(out.split('\n').map((line) => line.split(/\s+/)[3]?.split('/')[0] ?? ''));
}

export async function defaultInterface(): Promise<string> {
  const out = await runNetworkCommand(['ip', '-o', '-4', 'route', 'show', 'default']);
  const device = /\bdev (\S+)/.exec(out)?.[1];
  if (device === undefined) {
    throw new FcvmError('NETWORK', 'Bridged mode needs a default IPv4 route on the host to NAT the guest out of.');
  }
  return device;
}

export function bridgedRuleset(
  names: ReturnType<typeof bridgedNames>,
  guestIp: string,
  outInterface: string,
  ports: readonly (PublishedPort & { hostIp: string | null })[],
): string {
  const dnat = ports.map((p) => {
    const match = p.hostIp === null ? 'fib daddr type local' : `ip daddr ${p.hostIp}`;
    return `    ${match} ${p.protocol} dport ${p.hostPort} dnat to ${guestIp}:${p.guestPort}`;
  });
  return [
    `table ip ${names.table} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat;',
    ...dnat,
    '  }',
    '  chain output {',
    '    type nat hook output priority -100;',
    ...dnat,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat;',
    `    ip saddr ${guestIp} oifname "${outInterface}" masquerade`,
    `    oifname "${names.hostVeth}" ip saddr 127.0.0.0/8 masquerade`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter;',
    `    iifname "${names.hostVeth}" accept`,
    `    oifname "${names.hostVeth}" accept`,
    '  }',
    '}',
    '',
  ].join('\n');
}

export async function setupBridged(request: NetworkRequest): Promise<VmNetwork> {
  const names = bridgedNames(request.vmId);
  const netnsPath = `/run/netns/${names.namespace}`;
  const ports = request.publish.map((port) => ({ ...port, hostIp: port.hostIp ?? '0.0.0.0' }));
  await assertPortsFree(ports);
  const released = { done: false };
  const release = async (): Promise<void> => {
    if (released.done) return;
    released.done = true;
    await releaseBridged(names);
  };
  try {
    const mac = guestMacFor(request.vmId);
    const { host, guest } = await claimSubnet(request.registry, request.vmId, names, {
      hostVethMac: gatewayMacFor(mac),
    });
    await ipBatchIn(netnsPath, [
      'link set lo up',
      `tuntap add dev tap-${shortId(request.vmId)} mode tap`,
      'link add br0 type bridge',
      `link set tap-${shortId(request.vmId)} master br0`,
      `link set ${names.nsVeth} master br0`,
      `link set tap-${shortId(request.vmId)} up`,
      `link set ${names.nsVeth} up`,
      'link set br0 up',
    ]);
    await enableForwarding(names.hostVeth);
    const outInterface = await defaultInterface();
    await runNetworkCommand(
      ['nft', '-f', '-'],
      bridgedRuleset(
        names,
        guest,
        outInterface,
        request.publish.map((p) => ({ ...p, hostIp: p.hostIp })),
      ),
    );
    const record: NetworkRecord = {
      mode: 'bridged',
      tap_device: `tap-${shortId(request.vmId)}`,
      guest_mac: mac,
      guest_ip: guest,
      host_ip: host,
      loopback_ip: null,
      namespace_name: names.namespace,
    };
    return {
      mode: 'bridged',
      netnsPath,
      tap: { tapDevice: record.tap_device, guestMac: mac },
      plan: {
        kind: 'static',
        device: 'eth0',
        address: `${guest}/30`,
        gateway: host,
        mtu: null,
        dnsServers: [...request.dnsServers],
        searchDomains: [],
      },
      hostAddress: host,
      ports: ports.map((p) => ({ ...p, hostIp: p.hostIp === '0.0.0.0' ? host : p.hostIp })),
      helpers: [],
      record,
      release,
    };
  } catch (err) {
    await release();
    throw err;
  }
}

/**
 * Under a lock: the first free /30 from the VM id's hash on (probing past ones the host already
 * has, and `exclude`: a clone's own guest subnet), then the namespace and the veth pair with the
 * host's end addressed (and its MAC set if given), so the next VM sees it.
 */
export async function claimSubnet(
  registry: Registry,
  vmId: string,
  names: ReturnType<typeof bridgedNames>,
  options: { exclude?: string; hostVethMac?: string },
): Promise<{ host: string; guest: string }> {
  const vethAddress = options.hostVethMac === undefined ? '' : ` address ${options.hostVethMac}`;
  const lock = await lockFile(join(registry.dir, SUBNET_LOCK_NAME));
  try {
    const used = await hostIpv4Addresses();
    const start = subnetIndexFor(vmId);
    for (let probe = 0; probe < SUBNETS; probe++) {
      const candidate = subnetAddresses((start + probe) % SUBNETS);
      if (used.has(candidate.host) || candidate.host === options.exclude) continue;
      await runNetworkCommand(
        ['ip', '-batch', '-'],
        [
          `netns add ${names.namespace}`,
          `link add ${names.hostVeth}${vethAddress} type veth peer name ${names.nsVeth} netns ${names.namespace}`,
          `address add ${candidate.host}/30 dev ${names.hostVeth}`,
          `link set ${names.hostVeth} up`,
          '',
        ].join('\n'),
      );
      return candidate;
    }
    throw new FcvmError('NETWORK', 'Every bridged subnet in 172.30.0.0/16 is in use; stop some VMs.');
  } finally {
    lock.release();
  }
}

/** Forwarding for the guest's traffic, and loopback DNAT to it (route_localnet is per interface). */
export async function enableForwarding(hostVeth: string): Promise<void> {
  if (readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() !== '1') {
    await runNetworkCommand(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }
  writeFileSync(`/proc/sys/net/ipv4/conf/${hostVeth}/route_localnet`, '1');
}

/** Deletes the table, the namespace (taking the tap, bridge and veth pair with it); tolerates absence. */
export async function releaseBridged(names: ReturnType<typeof bridgedNames>): Promise<void> {
  const quiet = async (argv: string[]): Promise<void> => {
    try {
      await runNetworkCommand(argv);
    } catch {
      // Already gone (or never made): nothing to undo.
    }
  };
  await quiet(['nft', 'delete', 'table', 'ip', names.table]);
  await quiet(['ip', 'link', 'del', names.hostVeth]);
  await quiet(['ip', 'netns', 'del', names.namespace]);
}
