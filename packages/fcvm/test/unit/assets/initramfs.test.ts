import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { writeCpioNewc } from '../../../src/assets/cpio.js';
import { createAgentInitrd, injectedEntries } from '../../../src/assets/initramfs.js';

test('injectedEntries lists /fcvm and every parent directory before the files', () => {
  const entries = injectedEntries([
    { path: 'fc-agent.mjs', data: 'x', mode: 0o644 },
    { path: 'session/keys/token', data: 'y' },
  ]);
  assert.deepEqual(
    entries.map((e) => [e.type, e.path]),
    [
      ['dir', 'fcvm'],
      ['dir', 'fcvm/session'],
      ['dir', 'fcvm/session/keys'],
      ['file', 'fcvm/fc-agent.mjs'],
      ['file', 'fcvm/session/keys/token'],
    ],
  );
  const token = entries.at(-1);
  assert.equal(token?.type === 'file' ? token.mode : undefined, 0o600, 'extra files are private by default');
  assert.throws(() => injectedEntries([{ path: '../etc/passwd', data: '' }]), /below \/run\/fcvm/);
});

test('createAgentInitrd appends a second archive that unpacks over the base one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-initrd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const base = join(dir, 'base.cpio.gz');
  writeFileSync(
    base,
    gzipSync(writeCpioNewc([{ type: 'file', path: 'init', mode: 0o755, data: Buffer.from('base') }])),
  );
  writeFileSync(join(dir, 'agent.mjs'), 'console.log("agent")');
  const out = join(dir, 'vm.cpio.gz');
  await createAgentInitrd({
    baseInitrd: base,
    agentScript: join(dir, 'agent.mjs'),
    outPath: out,
    extraFiles: [{ path: 'token', data: 'secret' }],
  });
  const bytes = readFileSync(out);
  const baseBytes = readFileSync(base);
  assert.ok(bytes.subarray(0, baseBytes.length).equals(baseBytes), 'starts with the base initrd');
  // Unpack both archives in order, as the kernel does.
  const root = join(dir, 'root');
  mkdirSync(root);
  for (const archive of [baseBytes, bytes.subarray(baseBytes.length)]) {
    const unpack = spawnSync('cpio', ['-id', '--quiet'], { cwd: root, input: gunzipSync(archive), encoding: 'utf8' });
    assert.equal(unpack.status, 0, unpack.stderr);
  }
  assert.equal(readFileSync(join(root, 'init'), 'utf8'), 'base');
  assert.equal(readFileSync(join(root, 'fcvm/fc-agent.mjs'), 'utf8'), 'console.log("agent")');
  assert.equal(readFileSync(join(root, 'fcvm/token'), 'utf8'), 'secret');
});
