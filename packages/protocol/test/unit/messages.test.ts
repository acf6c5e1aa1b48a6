import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type BootPlan,
  MessageValidationError,
  parseBootPlan,
  parseExecSpec,
  parseHelloRequest,
} from '../../src/index.js';

const plan: BootPlan = {
  hostname: 'web',
  image: { kind: 'archive', format: 'docker-archive', path: '/dev/vdb' },
  imageReference: 'localhost/fcvm-busybox',
  command: ['httpd', '-f'],
  env: { A: '1' },
  user: null,
  workdir: null,
  tty: false,
  interactive: false,
  network: {
    kind: 'static',
    device: 'eth0',
    address: '10.0.2.100/24',
    gateway: '10.0.2.2',
    mtu: null,
    dnsServers: ['10.0.2.3'],
    searchDomains: [],
  },
  hostTimeMs: 1_700_000_000_000,
  ntpSources: [{ kind: 'pool', address: '2.debian.pool.org', options: ['iburst'] }],
};

test('a valid plan round-trips through JSON', () => {
  assert.deepEqual(parseBootPlan(JSON.parse(JSON.stringify(plan))), plan);
});

test('unknown fields are rejected with their path', () => {
  assert.throws(
    () => parseBootPlan({ ...plan, network: { ...plan.network, extra: true } }),
    (err: unknown) => err instanceof MessageValidationError && err.path === 'plan.network.extra',
  );
});

test('wrong types name the field', () => {
  assert.throws(() => parseBootPlan({ ...plan, tty: 'yes' }), /plan\.tty must be a boolean/);
  assert.throws(
    () => parseBootPlan({ ...plan, network: { ...plan.network, address: '10.0.2.100' } }),
    /plan\.network\.address must be an address with a prefix length/,
  );
  assert.throws(() => parseBootPlan({ ...plan, image: { kind: 'ftp' } }), /plan\.image\.kind must be one of/);
});

test('an exec needs a program', () => {
  assert.throws(
    () => parseExecSpec({ command: [], inVm: true, interactive: false, terminal: null, env: {}, workdir: null }),
    /exec\.command must name a program/,
  );
});

test("a restored VM's hello carries entropy and a hostname; bad values are refused by field", () => {
  const base = { protocolVersion: 1, token: 't', hostTimeMs: 1, restoreEpoch: 2 };
  const entropy = 'ab'.repeat(64);
  assert.deepEqual(parseHelloRequest({ ...base, restore: { entropy, hostname: 'clone-1' } }).restore, {
    entropy,
    hostname: 'clone-1',
  });
  assert.equal(parseHelloRequest(base).restore, undefined);
  assert.throws(
    () => parseHelloRequest({ ...base, restore: { entropy: 'abc', hostname: 'x' } }),
    /hello.restore.entropy/,
  );
  assert.throws(
    () => parseHelloRequest({ ...base, restore: { entropy, hostname: '-bad name' } }),
    /hello.restore.hostname/,
  );
  assert.throws(() => parseHelloRequest({ ...base, restore: { entropy, hostname: 'x', extra: 1 } }), /restore.extra/);
});
