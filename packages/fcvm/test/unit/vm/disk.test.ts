import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createCowDisk } from '../../../src/vm/disk.js';
import { tempDataDir } from '../../helpers/cli.js';

const tmp = tempDataDir('fcvm-disk-');
after(() => tmp.cleanup());

function makeBase(): string {
  const base = join(tmp.path, `base-${Math.random().toString(16).slice(2)}.raw`);
  writeFileSync(base, Buffer.alloc(0));
  execFileSync('truncate', ['-s', '64M', base]);
  // Some data at 1 MiB so content and sparseness can both be checked.
  execFileSync('dd', [`of=${base}`, 'bs=1', 'seek=1048576', 'conv=notrunc', 'status=none'], {
    input: Buffer.from('fcvm-base-marker'),
  });
  return base;
}

test('a qcow2 overlay is backed by the base and leaves it untouched', async () => {
  const base = makeBase();
  const before = readFileSync(base);
  const disk = await createCowDisk(base, join(tmp.path, 'overlay.qcow2'), { qcow2: true });
  assert.equal(disk.format, 'qcow2');
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', disk.path], { encoding: 'utf8' }));
  assert.equal(info['backing-filename'], base);
  assert.equal(info['virtual-size'], 64 * 2 ** 20);
  assert.ok(statSync(disk.path).size < 2 ** 20, 'the overlay is small');
  assert.ok(readFileSync(base).equals(before));
});

test('a raw copy keeps the content and stays sparse', async () => {
  const base = makeBase();
  const disk = await createCowDisk(base, join(tmp.path, 'copy.raw'), { qcow2: false });
  assert.equal(disk.format, 'raw');
  assert.ok(['reflink', 'sparse-copy'].includes(disk.kind));
  assert.ok(readFileSync(disk.path).equals(readFileSync(base)));
  assert.ok(statSync(disk.path).blocks * 512 < 8 * 2 ** 20, 'holes stay holes');
});
