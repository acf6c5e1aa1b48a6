/**
 * Per-VM loopback addresses for rootless published ports: 127.0.0.2, .3, ... so that many VMs can
 * publish the same port. All of 127.0.0.0/8 already routes to `lo` on Linux, so nothing is added to
 * the interface: pasta simply binds the address. The address is held by the VM's registry record;
 * allocation runs under `state/loopback-ip.lock` and skips addresses of live records, so a dead
 * owner's address is free again once the sweep has removed its record. It also skips addresses that
 * any socket on the host is bound to: the registry is per data dir, and another fcvm (another data
 * dir) or another program may already use 127.0.0.2.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FcvmError } from '../errors.js';
import { isRecordLive, type Registry } from '../state/registry.js';
import { lockFile } from '../sys/flock.js';

export const LOOPBACK_LOCK_NAME = 'loopback-ip.lock';

/** 127.0.0.2 ... 127.0.0.254, then 127.0.1.2 ... (the reference's order). */
export function* loopbackCandidates(): Generator<string> {
  for (let third = 0; third < 256; third++) {
    for (let fourth = 2; fourth < 255; fourth++) yield `127.0.${third}.${fourth}`;
  }
}

/** Picks the lowest address no live record holds and writes it into this VM's record. */
export async function allocateLoopbackAddress(registry: Registry, vmId: string): Promise<string> {
  const lock = await lockFile(join(registry.dir, LOOPBACK_LOCK_NAME));
  try {
    const taken = new Set([
      ...boundLoopbackAddresses(),
      ...registry
        .readAll()
        .filter((record) => record.vm_id !== vmId && isRecordLive(record))
        .map((record) => record.config.network.loopback_ip)
        .filter((ip): ip is string => ip !== null),
    ]);
    for (const candidate of loopbackCandidates()) {
      if (taken.has(candidate)) continue;
      const updated = await registry.update(vmId, (record) => ({
        ...record,
        config: { ...record.config, network: { ...record.config.network, loopback_ip: candidate } },
      }));
      if (updated === undefined) throw new FcvmError('STATE', `The registry record of ${vmId} vanished.`);
      return candidate;
    }
    throw new FcvmError('NETWORK', 'Every loopback address for published ports is in use; stop some VMs.');
  } finally {
    lock.release();
  }
}

/** IPv4 addresses in 127.0.0.0/8 that sockets of the host's network namespace are bound to. */
export function boundLoopbackAddresses(tables: readonly string[] = ['/proc/net/tcp', '/proc/net/udp']): Set<string> {
  const bound = new Set<string>();
  for (const table of tables) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv4 in this kernel: nothing bound there
    }
    for (const line of text.split('\n').slice(1)) {
      const hex = line.trim().split(/\s+/)[1]?.split(':')[0];
      if (hex?.length !== 8) continue;
      // The kernel prints the address as a host-order (little-endian) 32-bit number.
      const octets = [6, 4, 2, 0].map((at) => Number.parseInt(hex.slice(at, at + 2), 16));
      if (octets[0] === 127) bound.add(octets.join('.'));
    }
  }
  return bound;
}
