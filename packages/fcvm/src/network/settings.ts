/**
 * What the guest is told about the outside world: DNS servers, NTP servers and the proxy
 * variables. Each has a setting (environment first, then the config file's [network] table) so a
 * test can point the guest at servers it runs itself, and a default taken from the host.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { NtpSource } from '@fcvm/protocol';
import type { FcvmConfig } from '../config.js';
import { FcvmError } from '../errors.js';
import { log } from '../log.js';
import { readHostNtpSources } from './ntp-sources.js';

/** systemd-resolved's list of upstream servers first: /etc/resolv.conf then names its stub. */
export const RESOLV_CONF_PATHS: readonly string[] = ['/run/systemd/resolve/resolv.conf', '/etc/resolv.conf'];

/** Passed from the host's environment into the plan (and so into the container). */
export const PROXY_VARIABLES: readonly string[] = [
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
];

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

export function parseResolvConf(text: string): string[] {
  const servers: string[] = [];
  for (const line of text.split('\n')) {
    const [directive, address] = line.trim().split(/\s+/);
    if (directive === 'nameserver' && address !== undefined && isIP(address) !== 0) servers.push(address);
  }
  return servers;
}

/** The host's resolvers the guest can use (loopback ones mean nothing inside the guest). */
export function hostDnsServers(paths: readonly string[] = RESOLV_CONF_PATHS): string[] {
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      continue;
    }
    const usable = parseResolvConf(text).filter((address) => !isLoopback(address) && isIP(address) === 4);
    if (usable.length > 0) return usable;
  }
  log.warn('the host has no non-loopback IPv4 DNS server; the guest gets none (set FCVM_DNS or [network] dns)');
  return [];
}

function listSetting(
  env: string | undefined,
  configured: readonly string[] | undefined,
  name: string,
): string[] | null {
  const values =
    env !== undefined
      ? env
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean)
      : configured;
  if (values === undefined) return null;
  for (const value of values) {
    if (isIP(value) === 0 && name === 'FCVM_DNS') {
      throw new FcvmError('CONFIG', `${name} / [network] dns: '${value}' is not an IP address.`);
    }
  }
  return [...values];
}

export function guestDnsServers(config: FcvmConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  return listSetting(env.FCVM_DNS, config.network.dns, 'FCVM_DNS') ?? hostDnsServers();
}

export function guestNtpSources(config: FcvmConfig, env: NodeJS.ProcessEnv = process.env): NtpSource[] {
  const servers = listSetting(env.FCVM_NTP, config.network.ntp, 'FCVM_NTP');
  if (servers === null) return readHostNtpSources();
  return servers.map((address) => ({ kind: 'server', address, options: ['iburst'] }));
}

export function proxyEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PROXY_VARIABLES) {
    const value = env[name];
    if (value !== undefined && value !== '') out[name] = value;
  }
  return out;
}
