import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addSourceArgv, chronyConfig, setClockArgv } from '../../src/clock.js';
import { networkArgvs, ownAddress, resolvConf } from '../../src/network.js';
import { announceArgvs, killStaleConnectionsArgv } from '../../src/restore.js';

const network = {
  kind: 'static',
  device: 'eth0',
  address: '10.0.2.100/24',
  gateway: '10.0.2.2',
  mtu: 1500,
  dnsServers: ['10.0.2.3', '1.1.1.1'],
  searchDomains: ['example.internal'],
} as const;

test('eth0 gets its address, link, mtu and default route from the plan', () => {
  assert.deepEqual(networkArgvs(network), [
    ['ip', 'link', 'set', 'dev', 'eth0', 'mtu', '1500'],
    ['ip', 'address', 'replace', '10.0.2.100/24', 'dev', 'eth0'],
    ['ip', 'link', 'set', 'dev', 'eth0', 'up'],
    ['ip', 'route', 'replace', 'default', 'via', '10.0.2.2', 'dev', 'eth0'],
  ]);
  assert.equal(resolvConf(network), 'nameserver 10.0.2.3\nnameserver 1.1.1.1\nsearch example.internal\n');
  assert.equal(ownAddress(network), '10.0.2.100');
});

test('the clock is set from the host time with millisecond precision', () => {
  assert.deepEqual(setClockArgv(1_700_000_000_123), ['date', '--utc', '--set', '@1700000000.123']);
});

test('chronyd steps whenever it is off by more than a second; sources come through chronyc', () => {
  assert.match(chronyConfig(), /^makestep 1 -1$/m);
  assert.deepEqual(addSourceArgv({ kind: 'server', address: 'fd00::1', options: ['iburst'] }), [
    'chronyc',
    'add',
    'server',
    'fd00::1',
    'iburst',
  ]);
});

test('the restore keeps loopback, gateway and fd00::/64 connections: the reference filter plus fd00::/64', () => {
  assert.deepEqual(killStaleConnectionsArgv(), [
    'ss',
    '-K',
    'state',
    'established',
    '( ! dst 127.0.0.0/8 and ! dst [::1] and ! dst 10.0.2.0/24 and ! dst [fd00::/64] )',
  ]);
  assert.deepEqual(announceArgvs(network), [['arping', '-c', '1', '-U', '-I', 'eth0', '10.0.2.100']]);
  assert.deepEqual(announceArgvs({ kind: 'none' }), []);
});
