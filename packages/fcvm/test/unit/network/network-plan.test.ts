/**
 * The parts of network setup that are decisions rather than system calls: pasta's argv, addresses,
 * nftables rulesets, settings, health-check URLs, loopback allocation against live records.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../src/config.js';
import { bridgedNames, bridgedRuleset, subnetAddresses } from '../../../src/network/bridged.js';
import { publishedHealthUrl } from '../../../src/network/health-url.js';
import { allocateLoopbackAddress, boundLoopbackAddresses, loopbackCandidates } from '../../../src/network/loopback.js';
import { guestMacFor } from '../../../src/network/names.js';
import { pastaArgv } from '../../../src/network/pasta.js';
import { bridgeAddress, splicedPortsRuleset } from '../../../src/network/rootless.js';
import {
  guestDnsServers,
  guestNtpSources,
  hostDnsServers,
  parseResolvConf,
  proxyEnvironment,
} from '../../../src/network/settings.js';
import { Registry } from '../../../src/state/registry.js';

const tcp80 = { hostIp: '127.0.0.2', hostPort: 8080, guestPort: 80, protocol: 'tcp' as const };
const udp53 = { hostIp: '127.0.0.2', hostPort: 5353, guestPort: 53, protocol: 'udp' as const };

describe('network decisions', () => {
  test('pasta: guest address, mask, gateway, one -t/-u per published port, nothing from the namespace out', () => {
    const argv = pastaArgv({
      holderPid: 42,
      ifname: 'pasta0',
      guestAddress: '10.0.2.100',
      prefixLength: 24,
      gateway: '10.0.2.2',
      ports: [tcp80, udp53],
      pidFile: '/x/pasta.pid',
    });
    const joined = argv.join(' ');
    assert.match(joined, /-a 10\.0\.2\.100 -n 255\.255\.255\.0 -g 10\.0\.2\.2 /);
    assert.match(joined, /-t 127\.0\.0\.2\/8080:80 -u 127\.0\.0\.2\/5353:53 -T none -U none 42$/);
    assert.equal(argv.includes('--runas'), process.getuid?.() === 0);
    const none = pastaArgv({
      holderPid: 1,
      ifname: 'p',
      guestAddress: '10.0.2.100',
      prefixLength: 24,
      gateway: '10.0.2.2',
      ports: [],
      pidFile: 'f',
    }).join(' ');
    assert.match(none, /-t none -u none -T none -U none 1$/);
  });

  test('addresses: the namespace side of the guest link, bridged /30s, MACs', () => {
    assert.equal(bridgeAddress('10.0.2.100/24'), '10.0.2.1/24');
    assert.equal(bridgeAddress('172.30.1.6/30'), '172.30.1.5/30');
    assert.deepEqual(subnetAddresses(0), { host: '172.30.0.1', guest: '172.30.0.2' });
    assert.deepEqual(subnetAddresses(65), { host: '172.30.1.5', guest: '172.30.1.6' });
    assert.deepEqual(subnetAddresses(16_383), { host: '172.30.255.253', guest: '172.30.255.254' });
    assert.match(guestMacFor('vm-abc'), /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.notEqual(guestMacFor('vm-abc'), guestMacFor('vm-abd'));
    const names = bridgedNames('vm-0123456789abcdef');
    for (const name of [names.hostVeth, names.nsVeth, names.namespace]) assert.ok(name.length <= 15, name);
  });

  test('rulesets: loopback splices DNAT to the guest; bridged DNAT and NAT live in the per-VM table', () => {
    const spliced = splicedPortsRuleset('10.0.2.100', [tcp80, udp53]);
    assert.match(spliced, /ip daddr 127\.0\.0\.1 tcp dport 80 dnat to 10\.0\.2\.100:80/);
    assert.match(spliced, /ip daddr 127\.0\.0\.1 udp dport 53 dnat to 10\.0\.2\.100:53/);
    const names = bridgedNames('vm-12345678');
    const bridged = bridgedRuleset(names, '172.30.0.2', 'eth0', [{ ...tcp80, hostIp: null }]);
    assert.match(bridged, /^table ip fcvm-vm-12345 \{/);
    assert.match(bridged, /fib daddr type local tcp dport 8080 dnat to 172\.30\.0\.2:80/);
    assert.match(bridged, /ip saddr 172\.30\.0\.2 oifname "eth0" masquerade/);
    assert.match(bridged, /oifname "veth0-vm-12345" ip saddr 127\.0\.0\.0\/8 masquerade/);
  });

  test('settings: FCVM_DNS and FCVM_NTP win over the config; the host resolvers skip loopback', () => {
    const config = parseConfig('[network]\ndns = ["192.0.2.53"]\nntp = ["192.0.2.123"]\n', 'test');
    assert.deepEqual(guestDnsServers(config, {}), ['192.0.2.53']);
    assert.deepEqual(guestDnsServers(config, { FCVM_DNS: '198.18.0.2, 198.18.0.3' }), ['198.18.0.2', '198.18.0.3']);
    assert.throws(() => guestDnsServers(config, { FCVM_DNS: 'dns.example' }), /not an IP address/);
    assert.deepEqual(guestNtpSources(config, {}), [{ kind: 'server', address: '192.0.2.123', options: ['iburst'] }]);
    assert.deepEqual(guestNtpSources(config, { FCVM_NTP: '' }), []);
    assert.deepEqual(parseResolvConf('# c\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch x\n'), [
      '127.0.0.53',
      '10.1.1.1',
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'fcvm-resolv-'));
    try {
      writeFileSync(join(dir, 'stub'), 'nameserver 127.0.0.53\n');
      writeFileSync(join(dir, 'upstream'), 'nameserver 127.0.0.53\nnameserver 192.0.2.1\n');
      assert.deepEqual(hostDnsServers([join(dir, 'missing'), join(dir, 'stub'), join(dir, 'upstream')]), ['192.0.2.1']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(proxyEnvironment({ HTTP_PROXY: 'http://p:3128', NO_PROXY: '', PATH: '/bin' }), {
      HTTP_PROXY: 'http://p:3128',
    });
  });

  test('health-check URL goes through the published port of its guest port', () => {
    assert.equal(publishedHealthUrl('http://localhost/health?x=1', [tcp80]), 'http://127.0.0.2:8080/health?x=1');
    assert.throws(() => publishedHealthUrl('http://localhost:81/', [tcp80]), /guest port 81, which is not published/);
    assert.throws(() => publishedHealthUrl('http://localhost:53/', [udp53]), /guest port 53, which is not published/);
  });

  test('loopback addresses: the lowest one no live record holds', async () => {
    const candidates = loopbackCandidates();
    assert.equal(candidates.next().value, '127.0.0.2');
    const dir = mkdtempSync(join(tmpdir(), 'fcvm-loopback-'));
    try {
      const registry = new Registry(dir);
      await registry.save({ vm_id: 'vm-a', pid: process.pid, config: { network: { loopback_ip: '127.0.0.2' } } });
      // A dead owner's address is free again.
      await registry.save({ vm_id: 'vm-dead', pid: 2 ** 22 + 7, config: { network: { loopback_ip: '127.0.0.3' } } });
      await registry.save({ vm_id: 'vm-b', pid: process.ppid });
      assert.equal(await allocateLoopbackAddress(registry, 'vm-b'), '127.0.0.3');
      assert.equal(registry.read('vm-b')?.config.network.loopback_ip, '127.0.0.3');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('loopback addresses: one that a socket outside this data dir is bound to is skipped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fcvm-loopback-'));
    const server = createServer();
    try {
      const registry = new Registry(dir);
      await registry.save({ vm_id: 'vm-a', pid: process.pid });
      const first = await allocateLoopbackAddress(registry, 'vm-a');
      await registry.remove('vm-a');
      // Another fcvm (another data dir) or another program listens on that address now.
      await new Promise<void>((resolve) => server.listen({ host: first, port: 0 }, resolve));
      assert.ok(boundLoopbackAddresses().has(first));
      await registry.save({ vm_id: 'vm-b', pid: process.pid });
      assert.notEqual(await allocateLoopbackAddress(registry, 'vm-b'), first);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
