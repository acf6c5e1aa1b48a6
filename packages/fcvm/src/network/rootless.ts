/**
 * Rootless mode (the default): per VM a user + net namespace held by a holder process, with the
 * VM's tap and pasta's interface on one bridge, so the guest (10.0.2.100/24) shares a link with
 * pasta, which answers for the gateway 10.0.2.2 and carries traffic to and from the host.
 * Published ports listen on the VM's own loopback address (127.0.0.2, ...) unless an IP is given.
 *
 * A clone passes the snapshot's guest identity: same guest address in its own new namespace, a
 * new loopback address, the same published ports.
 */
import { join } from 'node:path';
import { ipBatchIn, runNetworkCommand } from './command.js';
import { startNamespaceHolder } from './holder.js';
import { allocateLoopbackAddress } from './loopback.js';
import { guestMacFor, shortId } from './names.js';
import { startPasta } from './pasta.js';
import { assertPortsFree } from './ports.js';
import type { GuestIdentity, NetworkRequest, PublishedPort, VmNetwork } from './types.js';

export const ROOTLESS_GUEST: Omit<GuestIdentity, 'mac'> = { address: '10.0.2.100/24', gateway: '10.0.2.2' };
const PASTA_IFNAME = 'pasta0';
const BRIDGE = 'br0';

type Release = () => Promise<void> | void;

/** The namespace's own address on the guest's link: the first of the guest's subnet (10.0.2.1). */
export function bridgeAddress(guestCidr: string): string {
  const [ip, prefix] = guestCidr.split('/') as [string, string];
  const value = ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(prefix));
  const first = Math.floor(value / size) * size + 1;
  return `${[24, 16, 8, 0].map((shift) => Math.floor(first / 2 ** shift) % 256).join('.')}/${prefix}`;
}

/**
 * pasta (Debian 12's) splices connections that arrive from the host's loopback straight to
 * 127.0.0.1:GUESTPORT inside the namespace instead of sending them to the guest. A DNAT in the
 * namespace carries them on to the guest; it needs route_localnet and a masquerade (the source is
 * 127.0.0.1). The table lives and dies with the namespace.
 */
export function splicedPortsRuleset(guestIp: string, ports: readonly PublishedPort[]): string {
  const rules = ports.map(
    (p) => `    ip daddr 127.0.0.1 ${p.protocol} dport ${p.guestPort} dnat to ${guestIp}:${p.guestPort}`,
  );
  return [
    'table ip fcvm {',
    '  chain output {',
    '    type nat hook output priority -100;',
    ...rules,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority 100;',
    `    oifname "${BRIDGE}" ip saddr 127.0.0.0/8 masquerade`,
    '  }',
    '}',
    '',
  ].join('\n');
}

async function forwardSplicedPorts(netnsPath: string, guestIp: string, ports: readonly PublishedPort[]): Promise<void> {
  if (ports.length === 0) return;
  await runNetworkCommand([
    'nsenter',
    `--net=${netnsPath}`,
    '--',
    'sysctl',
    '-qw',
    `net.ipv4.conf.${BRIDGE}.route_localnet=1`,
  ]);
  await runNetworkCommand(
    ['nsenter', `--net=${netnsPath}`, '--', 'nft', '-f', '-'],
    splicedPortsRuleset(guestIp, ports),
  );
}

export async function setupRootless(request: NetworkRequest, runDir: string): Promise<VmNetwork> {
  const releases: Release[] = [];
  const release = async (): Promise<void> => {
    for (let step = releases.pop(); step; step = releases.pop()) await step();
  };
  try {
    return await build(request, runDir, releases, release);
  } catch (err) {
    await release();
    throw err;
  }
}

async function build(
  request: NetworkRequest,
  runDir: string,
  releases: Release[],
  release: () => Promise<void>,
): Promise<VmNetwork> {
  const guest = request.clone ?? { ...ROOTLESS_GUEST, mac: guestMacFor(request.vmId) };
  const [guestIp, prefix] = guest.address.split('/') as [string, string];
  const loopback = await allocateLoopbackAddress(request.registry, request.vmId);
  const ports = request.publish.map((port) => ({ ...port, hostIp: port.hostIp ?? loopback }));
  await assertPortsFree(ports);

  const holder = await startNamespaceHolder();
  releases.push(() => holder.stop());
  const tapDevice = `tap-${shortId(request.vmId)}`;
  await ipBatchIn(holder.netnsPath, [
    'link set lo up',
    `tuntap add dev ${tapDevice} mode tap`,
    `link add ${BRIDGE} type bridge`,
    `link set ${tapDevice} master ${BRIDGE}`,
    `link set ${tapDevice} up`,
    `link set ${BRIDGE} up`,
  ]);
  const pasta = await startPasta({
    holderPid: holder.pid,
    ifname: PASTA_IFNAME,
    guestAddress: guestIp,
    prefixLength: Number(prefix),
    gateway: guest.gateway,
    ports,
    pidFile: join(runDir, 'pasta.pid'),
  });
  releases.push(() => pasta.stop());
  await ipBatchIn(holder.netnsPath, [
    `link set ${PASTA_IFNAME} master ${BRIDGE}`,
    `link set ${PASTA_IFNAME} up`,
    `address add ${bridgeAddress(guest.address)} dev ${BRIDGE}`,
  ]);
  await forwardSplicedPorts(holder.netnsPath, guestIp, ports);

  return {
    mode: 'rootless',
    netnsPath: holder.netnsPath,
    tap: { tapDevice, guestMac: guest.mac },
    plan: {
      kind: 'static',
      device: 'eth0',
      address: guest.address,
      gateway: guest.gateway,
      mtu: null,
      dnsServers: [...request.dnsServers],
      searchDomains: [],
    },
    hostAddress: loopback,
    ports,
    helpers: [
      { pid: holder.pid, start_time: holder.startTime, role: 'netns-holder' },
      { pid: pasta.pid, start_time: pasta.startTime, role: 'pasta' },
    ],
    record: {
      mode: 'rootless',
      tap_device: tapDevice,
      guest_mac: guest.mac,
      guest_ip: guestIp,
      host_ip: null,
      loopback_ip: loopback,
      namespace_name: null,
    },
    release,
  };
}
