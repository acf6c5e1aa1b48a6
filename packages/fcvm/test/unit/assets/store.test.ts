import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  canonicalJson,
  createBuildDir,
  inputHash,
  mountsBelow,
  publish,
  sweepStaleBuildDirs,
} from '../../../src/assets/store.js';
import { dataDir } from '../../../src/data-dir.js';

function tempDataDir(t: { after: (fn: () => void) => void }) {
  const root = mkdtempSync(join(tmpdir(), 'fcvm-store-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return dataDir(root);
}

test('inputHash ignores key order and changes with any value', () => {
  const a = inputHash({ packages: ['a', 'b'], suite: 'bookworm', nested: { x: 1, y: 2 } });
  const b = inputHash({ nested: { y: 2, x: 1 }, suite: 'bookworm', packages: ['a', 'b'] });
  assert.equal(a, b);
  assert.match(a, /^[0-9a-f]{16}$/);
  assert.notEqual(a, inputHash({ packages: ['b', 'a'], suite: 'bookworm', nested: { x: 1, y: 2 } }));
  assert.notEqual(a, inputHash({ packages: ['a', 'b'], suite: 'trixie', nested: { x: 1, y: 2 } }));
  assert.equal(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
});

test('mountsBelow finds mount points at and below a directory, children before parents, with octal escapes', () => {
  const mountinfo = [
    '22 1 0:21 / /proc rw - proc proc rw',
    '90 80 0:50 / /data/tmp/build-1/rootfs/proc rw - proc proc rw',
    '91 80 0:51 / /data/tmp/build-1/rootfs/dev/pts rw - devpts devpts rw',
    '92 80 0:52 / /data/tmp/build-1/with\\040space rw - tmpfs tmpfs rw',
    '93 80 0:53 / /data/tmp/build-10 rw - tmpfs tmpfs rw',
  ].join('\n');
  assert.deepEqual(mountsBelow('/data/tmp/build-1', mountinfo), [
    '/data/tmp/build-1/rootfs/dev/pts',
    '/data/tmp/build-1/rootfs/proc',
    '/data/tmp/build-1/with space',
  ]);
  assert.deepEqual(mountsBelow('/elsewhere', mountinfo), []);
});

test('sweepStaleBuildDirs removes scratch dirs of dead builders only', async (t) => {
  const dir = tempDataDir(t);
  const mine = await createBuildDir(dir);
  const dead = join(dir.tmp, 'build-999999999-1-0badc0de');
  mkdirSync(join(dead, 'rootfs', 'etc'), { recursive: true });
  const unrelated = join(dir.tmp, 'setup.lock');
  writeFileSync(unrelated, '');

  assert.deepEqual(await sweepStaleBuildDirs(dir), [dead]);
  assert.equal(existsSync(dead), false);
  assert.equal(existsSync(mine.path), true, 'a live builder keeps its directory');
  assert.equal(existsSync(unrelated), true);
  await mine.dispose();
  assert.equal(existsSync(mine.path), false);
});

test('publish renames files and directories into place, replacing an existing directory whole', async (t) => {
  const dir = tempDataDir(t);
  const build = await createBuildDir(dir);
  t.after(() => build.dispose());
  const builtFile = join(build.path, 'out.bin');
  writeFileSync(builtFile, 'v1');
  await publish(builtFile, join(dir.assets, 'thing-1.bin'), build);
  assert.equal(readFileSync(join(dir.assets, 'thing-1.bin'), 'utf8'), 'v1');
  assert.equal(existsSync(builtFile), false);

  for (const version of ['old', 'new']) {
    const builtDir = join(build.path, `kernel-${version}`);
    mkdirSync(builtDir);
    writeFileSync(join(builtDir, version), version);
    await publish(builtDir, join(dir.assets, 'kernel-x'), build);
  }
  assert.equal(existsSync(join(dir.assets, 'kernel-x', 'new')), true);
  assert.equal(existsSync(join(dir.assets, 'kernel-x', 'old')), false, 'no mix of old and new files');
});
