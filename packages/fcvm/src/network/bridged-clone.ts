/**
 * A clone of a bridged VM ("in-namespace NAT"): the guest keeps the snapshot's 172.30.x.y address,
 * gateway and MAC inside its own named namespace, so many clones of one snapshot coexist. The
 * clone's veth pair gets a fresh /30 from the bridged allocator and is not bridged: br0 (tap only)
 * carries the guest's gateway address and MAC, and a table inside the namespace SNATs the guest to the
 * veth's namespace end and DNATs whatever arrives for that address to the guest. The host routes
 * the /30 (connected on its veth end), masquerades egress and DNATs published ports arriving for
 * its veth address to the namespace end, all in the same per-VM table as a bridged VM, so the
 * release and the sweep after SIGKILL are the bridged ones (the namespace takes its table along).
 */
import { bridgedNames, claimSubnet, defaultInterface, enableForwarding, releaseBridged } from './bridged.js';
import { ipBatchIn, runNetworkCommand } from './command.js';
import { gatewayMacFor, shortId } from './names.js';
import type { GuestIdentity, NetworkRecord, NetworkRequest, PublishedPort, VmNetwork } from './types.js';

type Names = ReturnType<typeof bridgedNames>;

/** Inside the clone's namespace: the guest appears as the veth's namespace end, both ways. */
export function cloneNamespaceRuleset(names: Names, guestIp: string, namespaceIp: string): string {
  return [
    'table ip fcvm {',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat;',
    `    iifname "${names.nsVeth}" ip daddr ${namespaceIp} dnat to ${guestIp}`,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat;',
    `    oifname "${names.nsVeth}" ip saddr ${guestIp} snat to ${namespaceIp}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * On the host: published ports answer on the clone's own host address (a shared address such as
 * 127.0.0.1 would make two clones of one snapshot collide), egress is masqueraded. The DNAT chains
 * run just before a bridged VM's (priority -101), whose `fib daddr type local` match would
 * otherwise take a connection to the clone's address when the snapshot's source VM still runs.
 */
export function cloneHostRuleset(
  names: Names,
  hostIp: string,
  namespaceIp: string,
  outInterface: string,
  ports: readonly PublishedPort[],
): string {
  const dnat = ports.map(
    (p) => `    ip daddr ${hostIp} ${p.protocol} dport ${p.hostPort} dnat to ${namespaceIp}:${p.guestPort}`,
  );
  return [
    `table ip ${names.table} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority -101;',
    ...dnat,
    '  }',
    '  chain output {',
    '    type nat hook output priority -101;',
    ...dnat,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat;',
    `    ip saddr ${namespaceIp} oifname "${outInterface}" masquerade`,
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

export async function setupBridgedClone(request: NetworkRequest, guest: GuestIdentity): Promise<VmNetwork> {
  const names = bridgedNames(request.vmId);
  const netnsPath = `/run/netns/${names.namespace}`;
  const [guestIp, prefix] = guest.address.split('/') as [string, string];
  const released = { done: false };
  const release = async (): Promise<void> => {
    if (released.done) return;
    released.done = true;
    await releaseBridged(names);
  };
  try {
    const veth = await claimSubnet(request.registry, request.vmId, names, { exclude: guest.gateway });
    const namespaceIp = veth.guest;
    const tapDevice = `tap-${shortId(request.vmId)}`;
    await ipBatchIn(netnsPath, [
      'link set lo up',
      `tuntap add dev ${tapDevice} mode tap`,
      `link add br0 address ${gatewayMacFor(guest.mac)} type bridge`,
      `link set ${tapDevice} master br0`,
      `address add ${guest.gateway}/${prefix} dev br0`,
      `address add ${namespaceIp}/30 dev ${names.nsVeth}`,
      `link set ${tapDevice} up`,
      'link set br0 up',
      `link set ${names.nsVeth} up`,
      `route add default via ${veth.host}`,
    ]);
    // One process for both: the sysctl file is the namespace's own only when opened from inside it.
    await runNetworkCommand(
      ['nsenter', `--net=${netnsPath}`, '--', 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward && exec nft -f -'],
      cloneNamespaceRuleset(names, guestIp, namespaceIp),
    );
    await enableForwarding(names.hostVeth);
    const outInterface = await defaultInterface();
    await runNetworkCommand(
      ['nft', '-f', '-'],
      cloneHostRuleset(names, veth.host, namespaceIp, outInterface, request.publish),
    );
    const record: NetworkRecord = {
      mode: 'bridged',
      tap_device: tapDevice,
      guest_mac: guest.mac,
      guest_ip: guestIp,
      host_ip: veth.host,
      loopback_ip: null,
      namespace_name: names.namespace,
    };
    return {
      mode: 'bridged',
      netnsPath,
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
      hostAddress: veth.host,
      ports: request.publish.map((p) => ({ ...p, hostIp: veth.host })),
      helpers: [],
      record,
      release,
    };
  } catch (err) {
    await release();
    throw err;
  }
}
