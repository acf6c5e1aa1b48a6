import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  aptListsStamp,
  kernelAssetName,
  kernelPackageFromDepends,
  parseAptStanza,
} from '../../../src/assets/kernel.js';
import { moduleDepends, moduleLoadOrder } from '../../../src/assets/kernel-modules.js';
import { bzImagePayload, extractUncompressedKernel } from '../../../src/assets/vmlinux.js';

test('parseAptStanza reads the first stanza, with continuation lines', () => {
  const text = [
    'Package: linux-image-cloud-amd64',
    'Version: 6.1.192-2',
    'Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)',
    'Description: Linux for x86-64 cloud',
    ' This metapackage depends on the latest kernel.',
    '',
    'Package: other',
    'Version: 1',
  ].join('\n');
  const stanza = parseAptStanza(text);
  assert.equal(stanza.Package, 'linux-image-cloud-amd64');
  assert.equal(stanza.Version, '6.1.192-2');
  assert.match(stanza.Description ?? '', /\nThis metapackage/);
});

test('kernelPackageFromDepends picks the versioned linux-image package of a metapackage', () => {
  assert.equal(
    kernelPackageFromDepends('linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)'),
    'linux-image-6.1.0-56-cloud-amd64',
  );
  assert.equal(
    kernelPackageFromDepends('initramfs-tools | linux-initramfs-tool, linux-image-6.12.9-cloud-arm64'),
    'linux-image-6.12.9-cloud-arm64',
  );
  assert.equal(kernelPackageFromDepends('linux-image-cloud-amd64'), undefined);
});

test('the kernel asset name carries the release and changes with the package version', () => {
  const source = {
    arch: 'amd64',
    package: 'linux-image-6.1.0-56-cloud-amd64',
    version: '6.1.192-2',
    release: '6.1.0-56-cloud-amd64',
  } as const;
  const name = kernelAssetName(source);
  assert.match(name, /^kernel-6\.1\.0-56-cloud-amd64-[0-9a-f]{16}$/);
  assert.equal(kernelAssetName({ ...source }), name);
  assert.notEqual(kernelAssetName({ ...source, version: '6.1.192-3' }), name);
});

test('moduleDepends reads depends= from the .modinfo strings', () => {
  const ko = Buffer.concat([
    Buffer.from('\x7fELF....'),
    Buffer.from('\0license=GPL\0depends=virtio_ring,virtio\0retpoline=Y\0'),
  ]);
  assert.deepEqual(moduleDepends(ko), ['virtio_ring', 'virtio']);
  assert.deepEqual(moduleDepends(Buffer.from('\0license=GPL\0depends=\0')), []);
  assert.deepEqual(moduleDepends(Buffer.from('no modinfo')), []);
});

test('moduleLoadOrder puts every module after its dependencies and rejects cycles', () => {
  const deps: Record<string, string[]> = {
    virtio_ring: [],
    virtio: ['virtio_ring'],
    virtio_mmio: ['virtio', 'virtio_ring'],
    virtio_blk: ['virtio', 'virtio_ring'],
    failover: [],
    net_failover: ['failover'],
    virtio_net: ['virtio_ring', 'virtio', 'net_failover'],
  };
  const order = moduleLoadOrder(['virtio_mmio', 'virtio_blk', 'virtio_net'], (name) => deps[name] ?? []);
  assert.deepEqual(order, [
    'virtio_ring',
    'virtio',
    'virtio_mmio',
    'virtio_blk',
    'failover',
    'net_failover',
    'virtio_net',
  ]);
  assert.throws(() => moduleLoadOrder(['a'], (name) => (name === 'a' ? ['b'] : ['a'])), /cycle: a -> b -> a/);
});

test('an lz4 (legacy, as the kernel build writes it) bzImage payload unpacks to the ELF vmlinux', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-lz4-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(300_000, 'vmlinux text ')]);
  writeFileSync(join(dir, 'vmlinux'), elf);
  execFileSync('lz4', ['-l', '-q', '-f', join(dir, 'vmlinux'), join(dir, 'vmlinux.lz4')]);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(elf.length, 0);
  const payload = Buffer.concat([readFileSync(join(dir, 'vmlinux.lz4')), size]); // the kernel's appended size
  const image = Buffer.alloc(2048 + payload.length);
  image.write('HdrS', 0x202, 'latin1');
  image[0x1f1] = 3;
  image.writeUInt32LE(0, 0x248);
  image.writeUInt32LE(payload.length, 0x24c);
  payload.copy(image, 2048);
  assert.ok((await extractUncompressedKernel(image, 'amd64')).equals(elf));
});

test('bzImagePayload finds the compressed kernel through the setup header', () => {
  const image = Buffer.alloc(8192);
  image.write('HdrS', 0x202, 'latin1');
  image[0x1f1] = 3; // setup sectors: protected-mode code starts at (3 + 1) * 512
  image.writeUInt32LE(100, 0x248); // payload offset
  image.writeUInt32LE(16, 0x24c); // payload length
  image.write('PAYLOAD-PAYLOAD!', 2048 + 100, 'latin1');
  assert.equal(bzImagePayload(image)?.toString('latin1'), 'PAYLOAD-PAYLOAD!');
  assert.equal(bzImagePayload(Buffer.alloc(8192)), undefined);
});

test('aptListsStamp changes when apt-get update changes the package lists', (t) => {
  const lists = mkdtempSync(join(tmpdir(), 'fcvm-apt-lists-'));
  t.after(() => rmSync(lists, { recursive: true, force: true }));
  writeFileSync(join(lists, 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages'), 'Package: a\n');
  writeFileSync(join(lists, 'lock'), '');
  const first = aptListsStamp(lists);
  assert.equal(aptListsStamp(lists), first);
  writeFileSync(join(lists, 'lock'), 'held');
  assert.equal(aptListsStamp(lists), first, 'the lock file is not content');
  writeFileSync(
    join(lists, 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages'),
    'Package: a\nPackage: b\n',
  );
  assert.notEqual(aptListsStamp(lists), first);
  assert.equal(aptListsStamp(join(lists, 'missing')), 'no-apt-lists');
});
