import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { normalizeImageRef, resolveLocalImage, writeImageIndex } from '../../../src/assets/image-store.js';

test('normalizeImageRef adds :latest only when no tag or digest is given', () => {
  assert.equal(normalizeImageRef('localhost/fcvm-busybox'), 'localhost/fcvm-busybox:latest');
  assert.equal(normalizeImageRef('localhost/fcvm-busybox:1'), 'localhost/fcvm-busybox:1');
  assert.equal(normalizeImageRef('localhost:5000/x'), 'localhost:5000/x:latest');
  assert.equal(normalizeImageRef('x@sha256:abcd'), 'x@sha256:abcd');
});

test('resolveLocalImage finds archives through index.json; the index is rewritten only on change', async (t) => {
  const assets = mkdtempSync(join(tmpdir(), 'fcvm-images-'));
  t.after(() => rmSync(assets, { recursive: true, force: true }));
  assert.equal(resolveLocalImage(assets, 'localhost/fcvm-busybox'), undefined, 'no index yet');

  const index = {
    images: { 'localhost/fcvm-busybox:latest': { archive: 'bb-1.tar', format: 'docker-archive' as const } },
  };
  await writeImageIndex(assets, index);
  assert.equal(resolveLocalImage(assets, 'localhost/fcvm-busybox'), undefined, 'the archive itself is missing');
  mkdirSync(join(assets, 'images'), { recursive: true });
  writeFileSync(join(assets, 'images', 'bb-1.tar'), 'tar');
  assert.deepEqual(resolveLocalImage(assets, 'localhost/fcvm-busybox'), {
    ref: 'localhost/fcvm-busybox:latest',
    path: join(assets, 'images', 'bb-1.tar'),
    format: 'docker-archive',
  });
  assert.equal(resolveLocalImage(assets, 'docker.io/library/busybox'), undefined);

  const inode = statSync(join(assets, 'images', 'index.json')).ino;
  await writeImageIndex(assets, index);
  assert.equal(statSync(join(assets, 'images', 'index.json')).ino, inode);
});
