/**
 * eth0 from the plan: address, link, default route, DNS. The guest kernel's `ip=` parameter does
 * not work with the distribution kernel, so the agent does it with iproute2.
 */
import { writeFile } from 'node:fs/promises';
import type { NetworkPlan } from '@fcvm/protocol';
import { runCommand } from './command.js';

type StaticNetwork = Extract<NetworkPlan, { kind: 'static' }>;

export function networkArgvs(network: StaticNetwork): string[][] {
  const argvs: string[][] = [];
  if (network.mtu !== null) argvs.push(['ip', 'link', 'set', 'dev', network.device, 'mtu', String(network.mtu)]);
  argvs.push(['ip', 'address', 'replace', network.address, 'dev', network.device]);
  argvs.push(['ip', 'link', 'set', 'dev', network.device, 'up']);
  argvs.push(['ip', 'route', 'replace', 'default', 'via', network.gateway, 'dev', network.device]);
  return argvs;
}

export function resolvConf(network: StaticNetwork): string {
  const lines = network.dnsServers.map((server) => `nameserver ${server}`);
  if (network.searchDomains.length > 0) lines.push(`search ${network.searchDomains.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

export async function configureNetwork(network: NetworkPlan): Promise<void> {
  if (network.kind === 'none') return;
  for (const argv of networkArgvs(network)) await runCommand(argv);
  if (network.dnsServers.length > 0) await writeFile('/etc/resolv.conf', resolvConf(network));
  // Announce ourselves: the host side (pasta) learns the guest's MAC from its first frame, and a
  // server that only answers would otherwise never send one before its first client arrives.
  const address = ownAddress(network);
  if (address !== null) {
    await runCommand(['arping', '-c', '1', '-U', '-I', network.device, address], { allowFailure: true });
  }
}

/** The guest's own IPv4 address without the prefix length, for gratuitous ARP. */
export function ownAddress(network: NetworkPlan): string | null {
  if (network.kind === 'none') return null;
  const address = network.address.split('/')[0] ?? '';
  return address.includes(':') ? null : address;
}

export async function setHostname(hostname: string): Promise<void> {
  await runCommand(['hostname', hostname]);
  await writeFile('/etc/hostname', `${hostname}\n`);
}
