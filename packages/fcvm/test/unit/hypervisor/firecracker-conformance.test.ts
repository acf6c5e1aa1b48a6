/**
 * Every request body the Firecracker adapter can produce, for every supported version and with
 * each option on and off, is valid for Firecracker's published API spec (shared/firecracker/
 * firecracker.yaml) with unknown properties forbidden, as Firecracker's parser forbids them.
 * Fields a version does not know are absent for that version.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isFcvmError } from '../../../src/errors.js';
import {
  actionBody,
  balloonBody,
  balloonUpdateBody,
  bootSourceBody,
  driveBody,
  drivePatchBody,
  entropyBody,
  loggerBody,
  machineConfigBody,
  metricsBody,
  mmdsConfigBody,
  networkInterfaceBody,
  type SnapshotLoadOptions,
  snapshotCreateBody,
  snapshotLoadBody,
  vmStateBody,
  vsockBody,
} from '../../../src/hypervisor/firecracker/api-bodies.js';
import {
  ENDPOINTS,
  type EndpointBody,
  type EndpointName,
  FirecrackerApiClient,
  GATED_FIELDS,
  REPLACED_FIELDS,
} from '../../../src/hypervisor/firecracker/api-client.js';
import { ACTION_TYPES, CACHE_TYPES, IO_ENGINES, LOG_LEVELS } from '../../../src/hypervisor/firecracker/api-schemas.js';
import {
  type FirecrackerVersion,
  formatVersion,
  MIN_FIRECRACKER_VERSION,
  parseVersion,
  supports,
} from '../../../src/hypervisor/firecracker/version.js';
import { loadSpecValidators, specPath, specSkipReason } from '../../helpers/firecracker-spec.js';

/** Releases the adapter claims to drive: every release that changed a gated field, plus the latest patch. */
const SUPPORTED_VERSIONS = ['1.10.0', '1.11.0', '1.12.0', '1.13.0', '1.14.0', '1.15.0', '1.16.0', '1.16.1'].map(
  (text) => parseVersion(text)!,
);

/** Every combination of the given option values. */
function combos<T extends Record<string, readonly unknown[]>>(axes: T): Array<{ [K in keyof T]: T[K][number] }> {
  let out: Array<Record<string, unknown>> = [{}];
  for (const [key, values] of Object.entries(axes)) {
    out = out.flatMap((partial) => values.map((value) => ({ ...partial, [key]: value })));
  }
  return out as Array<{ [K in keyof T]: T[K][number] }>;
}

/** Drops keys whose value is undefined (an omitted option). */
function defined<T extends object>(options: T): T {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as T;
}

const bucket = { size: 1_000_000, refill_time: 100 };
const limiters = [
  undefined,
  { bandwidth: bucket },
  { ops: { ...bucket, one_time_burst: 10 } },
  { bandwidth: bucket, ops: bucket },
];

interface Generated {
  endpoint: EndpointName;
  body: object;
  label: string;
}

/** All bodies for one version; builders that refuse an option for this version are recorded as refusals. */
function generate(version: FirecrackerVersion): { bodies: Generated[]; refusals: string[] } {
  const bodies: Generated[] = [];
  const refusals: string[] = [];
  const add = <E extends EndpointName>(endpoint: E, label: string, build: () => EndpointBody<E>) => {
    try {
      bodies.push({ endpoint, body: build(), label });
    } catch (err) {
      if (!isFcvmError(err)) throw err;
      refusals.push(`${endpoint} ${label}: ${err.message}`);
    }
  };

  for (const o of combos({ initrd: [null, '/k/initrd.img'], args: ['', 'console=ttyS0 root=/dev/vda'] })) {
    add('bootSource', JSON.stringify(o), () =>
      bootSourceBody({ kernelPath: '/k/vmlinux', initrdPath: o.initrd, bootArgs: o.args }),
    );
  }
  for (const o of combos({ hugepages: [false, true], trackDirtyPages: [false, true], vcpus: [1, 2, 32] })) {
    add('machineConfig', JSON.stringify(o), () => machineConfigBody({ ...o, memoryMib: 512 }));
  }
  for (const o of combos({
    readOnly: [false, true],
    isRoot: [false, true],
    cacheType: [undefined, ...CACHE_TYPES],
    ioEngine: [undefined, ...IO_ENGINES],
    rateLimiter: limiters,
  })) {
    add('drive', JSON.stringify(o), () => driveBody(defined({ id: 'rootfs', path: '/d/rootfs.raw', ...o })));
  }
  for (const o of combos({ path: [undefined, '/d/clone.raw'], rateLimiter: [undefined, { bandwidth: bucket }] })) {
    add('drivePatch', JSON.stringify(o), () => drivePatchBody(defined({ id: 'rootfs', ...o })));
  }
  for (const o of combos({
    guestMac: [undefined, '02:fc:00:00:00:05'],
    mtu: [undefined, 1500],
    rxRateLimiter: [undefined, { bandwidth: bucket }],
    txRateLimiter: [undefined, { ops: bucket }],
  })) {
    add('networkInterface', JSON.stringify(o), () =>
      networkInterfaceBody(version, defined({ ifaceId: 'eth0', tapDevice: 'tap-fcvm0', ...o })),
    );
  }
  add('vsock', '', () => vsockBody({ udsPath: '/vms/x/vsock.sock' }));
  for (const imdsCompat of [undefined, false, true]) {
    add('mmdsConfig', `imdsCompat=${imdsCompat}`, () =>
      mmdsConfigBody(version, defined({ networkInterfaces: ['eth0'], imdsCompat })),
    );
  }
  add('mmdsPut', 'plan', () => ({ latest: { 'container-plan': { image: 'x', cmd: null }, 'host-time': '1' } }));
  add('mmdsPatch', 'epoch', () => ({ latest: { 'restore-epoch': '2' } }));
  for (const rateLimiter of limiters)
    add('entropy', JSON.stringify(rateLimiter), () => entropyBody(defined({ rateLimiter })));
  for (const o of combos({
    deflateOnOom: [false, true],
    statsPollingIntervalS: [undefined, 0, 5],
    freePageHinting: [undefined, true],
    freePageReporting: [undefined, false],
  })) {
    add('balloon', JSON.stringify(o), () => balloonBody(version, defined({ amountMib: 64, ...o })));
  }
  add('balloonUpdate', '', () => balloonUpdateBody({ amountMib: 128 }));
  for (const o of combos({
    logPath: [undefined, '/vms/x/fc.log'],
    level: [undefined, ...LOG_LEVELS],
    showLevel: [undefined, true, false],
    showLogOrigin: [undefined, true],
    module: [undefined, 'api_server'],
  })) {
    add('logger', JSON.stringify(o), () => loggerBody(defined(o)));
  }
  add('metrics', '', () => metricsBody({ metricsPath: '/vms/x/metrics.json' }));
  for (const action of ACTION_TYPES) add('action', action, () => actionBody(action));
  for (const state of ['Paused', 'Resumed'] as const) add('vmState', state, () => vmStateBody(state));
  for (const kind of ['full', 'diff'] as const) {
    add('snapshotCreate', kind, () =>
      snapshotCreateBody({ vmstatePath: '/s/vmstate.bin', memoryPath: '/s/memory.bin', kind }),
    );
  }
  const memories: SnapshotLoadOptions['memory'][] = [
    { backend: 'file', path: '/s/memory.bin' },
    { backend: 'uffd', socketPath: '/run/uffd.sock' },
  ];
  for (const o of combos({
    memory: memories,
    trackDirtyPages: [false, true],
    resume: [false, true],
    networkOverrides: [undefined, [], [{ ifaceId: 'eth0', tapDevice: 'tap-clone1' }]],
    vsockUdsPath: [undefined, '/vms/clone/vsock.sock'],
  })) {
    add('snapshotLoad', JSON.stringify(o), () =>
      snapshotLoadBody(version, defined({ vmstatePath: '/s/vmstate.bin', ...o })),
    );
  }
  return { bodies, refusals };
}

describe('Firecracker request bodies conform to firecracker.yaml', { skip: specSkipReason }, () => {
  const validatorFor = specPath ? loadSpecValidators() : () => assert.fail('no spec');

  test('the strict validator rejects unknown fields (negative control)', () => {
    const validate = validatorFor(ENDPOINTS.machineConfig.spec);
    assert.equal(validate({ vcpu_count: 1, mem_size_mib: 128 }), true);
    assert.equal(validate({ vcpu_count: 1, mem_size_mib: 128, bogus: true }), false);
    const load = validatorFor(ENDPOINTS.snapshotLoad.spec);
    assert.equal(
      load({ snapshot_path: '/s', mem_backend: { backend_type: 'File', backend_path: '/m', extra: 1 } }),
      false,
    );
    assert.equal(validatorFor('MmdsConfig')({ network_interfaces: ['eth0'], ipv4_address: '10.0.0.1' }), false);
  });

  for (const version of SUPPORTED_VERSIONS) {
    test(`Firecracker ${formatVersion(version)}`, (t) => {
      const client = new FirecrackerApiClient('/nonexistent.sock', version);
      const { bodies, refusals } = generate(version);
      const seen = new Set<EndpointName>();
      for (const { endpoint, body, label } of bodies) {
        seen.add(endpoint);
        const where = `${endpoint} ${label} ${JSON.stringify(body)}`;
        // fcvm's own schemas and gates accept what its builders produce.
        client.checkBody(endpoint, body as EndpointBody<typeof endpoint>);
        const validate = validatorFor(ENDPOINTS[endpoint].spec);
        assert.ok(validate(body), `${where}: ${JSON.stringify(validate.errors)}`);
        for (const gate of GATED_FIELDS) {
          if (gate.endpoint === endpoint && !supports(version, gate.feature)) {
            assert.ok(!(gate.field in body), `${where}: ${gate.field} sent to ${formatVersion(version)}`);
          }
        }
        for (const old of REPLACED_FIELDS) {
          if (old.endpoint === endpoint && supports(version, old.replacedBy)) {
            assert.ok(!(old.field in body), `${where}: deprecated ${old.field} sent to ${formatVersion(version)}`);
          }
        }
      }
      assert.deepEqual([...seen].sort(), (Object.keys(ENDPOINTS) as EndpointName[]).sort(), 'every endpoint covered');
      // Refusals happen exactly where an option needs a newer release.
      for (const refusal of refusals) assert.match(refusal, /does not support .* it needs v1\.\d+\.0 or newer\.$/);
      const expectRefusals = !supports(version, 'vsockOverride') || !supports(version, 'networkMtu');
      assert.equal(refusals.length > 0, expectRefusals, refusals.join('\n'));
      assert.ok(bodies.length > 100, `only ${bodies.length} bodies generated`);
      t.diagnostic(`${bodies.length} bodies valid; ${refusals.length} option combinations refused as too new`);
    });
  }

  test('dirty tracking on load uses the name each version knows', () => {
    const body = (minor: number) =>
      snapshotLoadBody(
        { major: 1, minor, patch: 0 },
        { vmstatePath: '/s', memory: { backend: 'file', path: '/m' }, trackDirtyPages: true, resume: false },
      );
    assert.deepEqual(Object.keys(body(12)).sort(), [
      'enable_diff_snapshots',
      'mem_backend',
      'resume_vm',
      'snapshot_path',
    ]);
    assert.deepEqual(Object.keys(body(13)).sort(), ['mem_backend', 'resume_vm', 'snapshot_path', 'track_dirty_pages']);
  });

  test('the client refuses to send a gated field to an older version', () => {
    const client = new FirecrackerApiClient('/nonexistent.sock', MIN_FIRECRACKER_VERSION);
    assert.throws(
      () =>
        client.checkBody('snapshotLoad', {
          snapshot_path: '/s',
          mem_backend: { backend_type: 'File', backend_path: '/m' },
          resume_vm: false,
          vsock_override: { uds_path: '/v' },
        }),
      /does not know it/,
    );
    assert.throws(
      () => client.checkBody('machineConfig', { vcpu_count: 1, mem_size_mib: 1, bogus: 1 } as never),
      /invalid machineConfig request/,
    );
  });
});
