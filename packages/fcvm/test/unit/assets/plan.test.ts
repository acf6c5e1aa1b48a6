import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkAssets, planAssets } from '../../../src/assets/ensure.js';
import { parseConfig } from '../../../src/config.js';
import { dataDir } from '../../../src/data-dir.js';

// Planning reads the host's apt cache and busybox-static (installed by scripts/install-host-deps.sh); it builds nothing.

function tempDataDir(t: { after: (fn: () => void) => void }) {
  const root = mkdtempSync(join(tmpdir(), 'fcvm-plan-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return dataDir(root);
}

const defaults = parseConfig('', 'defaults');

test('asset names are stable for the same inputs, and only dependent assets change with an input', async (t) => {
  const dir = tempDataDir(t);
  const first = await planAssets(dir, defaults);
  const again = await planAssets(dir, defaults);
  assert.deepEqual(
    [first.kernel.dir, first.initrd, first.rootfs, first.testImage],
    [again.kernel.dir, again.initrd, again.rootfs, again.testImage],
  );
  assert.match(first.kernel.name, /^kernel-\d[^/]*-[0-9a-f]{16}$/);
  assert.match(first.initrd, /\/initrd-[0-9a-f]{16}\.cpio\.gz$/);
  assert.match(first.rootfs, /\/rootfs-[0-9a-f]{16}\.ext4$/);
  assert.match(first.testImage, /\/images\/fcvm-busybox-[0-9a-f]{16}\.tar$/);

  const extra = await planAssets(dir, parseConfig('[rootfs]\nextra_packages = ["curl"]\n', 'extra'));
  assert.notEqual(extra.rootfs, first.rootfs, 'the package list is an input of the rootfs');
  assert.equal(extra.kernel.dir, first.kernel.dir);
  assert.equal(extra.initrd, first.initrd);
  assert.equal(extra.testImage, first.testImage);

  const mirror = await planAssets(dir, parseConfig('[rootfs]\nmirror = "http://deb.debian.org/debian"\n', 'mirror'));
  assert.notEqual(mirror.rootfs, first.rootfs, 'the mirror is an input of the rootfs');
});

test('checkAssets reports each asset present only once it exists under its exact name', async (t) => {
  const dir = tempDataDir(t);
  const plan = await planAssets(dir, defaults);
  assert.deepEqual(
    (await checkAssets(dir, defaults)).map((s) => [s.kind, s.present]),
    [
      ['kernel', false],
      ['initrd', false],
      ['rootfs', false],
      ['testImage', false],
    ],
  );
  mkdirSync(plan.kernel.dir, { recursive: true });
  const statuses = await checkAssets(dir, defaults);
  assert.deepEqual(
    statuses.map((s) => s.present),
    [true, false, false, false],
  );
  assert.equal(statuses[0]?.name, plan.kernel.name);
});

test('kernel.path is refused with a clear message', async (t) => {
  const dir = tempDataDir(t);
  await assert.rejects(planAssets(dir, parseConfig('[kernel]\npath = "/boot/vmlinuz"\n', 'k')), {
    code: 'CONFIG',
    message: /kernel\.path is not supported/,
  });
});
