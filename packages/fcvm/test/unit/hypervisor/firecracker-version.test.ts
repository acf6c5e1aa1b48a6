import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isFcvmError } from '../../../src/errors.js';
import { resolveFirecrackerBinary } from '../../../src/hypervisor/firecracker/binary.js';
import { assertSupportedVersion, parseVersionOutput, supports } from '../../../src/hypervisor/firecracker/version.js';
import {
  clearVersionMemoryCache,
  detectFirecrackerVersion,
} from '../../../src/hypervisor/firecracker/version-probe.js';

test('parses `firecracker --version` output', () => {
  assert.deepEqual(parseVersionOutput('Firecracker v1.16.1\n\n'), { major: 1, minor: 16, patch: 1 });
  assert.deepEqual(parseVersionOutput('\nFirecracker v1.10.0-dev\n'), { major: 1, minor: 10, patch: 0 });
  assert.equal(parseVersionOutput('QEMU emulator version 8.2.0'), undefined);
});

test('feature gates follow the release history', () => {
  const v = (minor: number, patch = 0) => ({ major: 1, minor, patch });
  assert.equal(supports(v(11), 'networkOverrides'), false);
  assert.equal(supports(v(12), 'networkOverrides'), true);
  assert.equal(supports(v(12), 'trackDirtyPagesOnLoad'), false);
  assert.equal(supports(v(13), 'trackDirtyPagesOnLoad'), true);
  assert.equal(supports(v(15, 9), 'vsockOverride'), false);
  assert.equal(supports(v(16), 'vsockOverride'), true);
  assert.equal(supports({ major: 2, minor: 0, patch: 0 }, 'networkMtu'), true);
});

test('versions below the minimum are refused with one sentence', () => {
  assert.throws(
    () => assertSupportedVersion({ major: 1, minor: 9, patch: 3 }, '/opt/fc'),
    (err) =>
      isFcvmError(err) && err.code === 'HYPERVISOR' && /1\.9\.3 .* too old: fcvm needs v1\.10\.0/.test(err.message),
  );
  assert.doesNotThrow(() => assertSupportedVersion({ major: 1, minor: 10, patch: 0 }, '/opt/fc'));
});

test('the version is cached per binary path, mtime and size', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-fc-version-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const binary = join(dir, 'firecracker');
  const counter = join(dir, 'runs');
  const script = (version: string) => `#!/bin/sh\necho run >> '${counter}'\necho 'Firecracker v${version}'\necho\n`;
  writeFileSync(binary, script('1.13.0'));
  chmodSync(binary, 0o755);
  const cacheFile = join(dir, 'cache');
  clearVersionMemoryCache();

  assert.deepEqual(await detectFirecrackerVersion(binary, { cacheFile }), { major: 1, minor: 13, patch: 0 });
  assert.deepEqual(await detectFirecrackerVersion(binary, { cacheFile }), { major: 1, minor: 13, patch: 0 });
  assert.equal(readFileSync(counter, 'utf8').trim().split('\n').length, 1, 'second call served from memory');

  clearVersionMemoryCache();
  await detectFirecrackerVersion(binary, { cacheFile });
  assert.equal(
    readFileSync(counter, 'utf8').trim().split('\n').length,
    1,
    'a new process is served from the cache file',
  );

  // Replacing the binary (different size) must not reuse the old answer.
  writeFileSync(binary, script('1.16.1  '));
  assert.deepEqual(await detectFirecrackerVersion(binary, { cacheFile }), { major: 1, minor: 16, patch: 1 });
  assert.equal(readFileSync(counter, 'utf8').trim().split('\n').length, 2);
});

test('a binary that is not firecracker is refused clearly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-fc-version-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const binary = join(dir, 'not-firecracker');
  writeFileSync(binary, '#!/bin/sh\necho hello\n');
  chmodSync(binary, 0o755);
  await assert.rejects(detectFirecrackerVersion(binary), /not a firecracker binary/);
});

test('binary lookup: explicit, FCVM_FIRECRACKER_BIN, config, PATH', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-fc-bin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const fc = join(dir, 'firecracker');
  writeFileSync(fc, '#!/bin/sh\n');
  chmodSync(fc, 0o755);
  const env = { PATH: dir };
  assert.deepEqual(resolveFirecrackerBinary({ env }), { found: true, path: fc, source: 'path' });
  assert.deepEqual(resolveFirecrackerBinary({ env: { PATH: '/nonexistent' }, configured: fc }), {
    found: true,
    path: fc,
    source: 'config',
  });
  assert.deepEqual(resolveFirecrackerBinary({ env: { PATH: '', FCVM_FIRECRACKER_BIN: fc } }), {
    found: true,
    path: fc,
    source: 'env',
  });
  const missing = resolveFirecrackerBinary({ env: { ...env, FCVM_FIRECRACKER_BIN: join(dir, 'nope') } });
  assert.equal(missing.found, false, 'a named but missing binary does not fall back to PATH');
  const none = resolveFirecrackerBinary({ env: { PATH: '/nonexistent' } });
  assert.ok(!none.found && /no firecracker binary was found in PATH/.test(none.reason));
});
