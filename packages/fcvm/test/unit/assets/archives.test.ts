import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ArchiveEntry } from '../../../src/assets/archive-entry.js';
import { writeCpioNewc } from '../../../src/assets/cpio.js';
import { writeTar } from '../../../src/assets/tar.js';

const entries: ArchiveEntry[] = [
  { type: 'dir', path: 'bin', mode: 0o755 },
  { type: 'file', path: '/bin/tool', mode: 0o750, data: Buffer.from('#!/bin/sh\necho hi\n') },
  { type: 'symlink', path: 'bin/alias', target: 'tool' },
  { type: 'dir', path: 'deep', mode: 0o700 },
  { type: 'file', path: `deep/${'d'.repeat(90)}/${'f'.repeat(60)}`, mode: 0o644, data: Buffer.alloc(1000, 7) },
];

function extractWith(argv: string[], archive: Buffer, t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-archive-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'archive');
  writeFileSync(file, archive);
  const out = join(dir, 'out');
  spawnSync('mkdir', [out]);
  const result = spawnSync(argv[0]!, [...argv.slice(1), file], { cwd: out, encoding: 'utf8', shell: false });
  assert.equal(result.status, 0, result.stderr);
  return out;
}

test('writeTar output extracts with GNU tar: modes, symlinks, long names', (t) => {
  // The long name's parent directory is not listed: tar creates it.
  const archive = writeTar(entries);
  assert.equal(archive.length % 512, 0);
  const out = extractWith(['tar', '--no-same-owner', '-xf'], archive, t);
  assert.equal(readFileSync(join(out, 'bin/tool'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.equal(statSync(join(out, 'bin/tool')).mode & 0o777, 0o750);
  assert.equal(readlinkSync(join(out, 'bin/alias')), 'tool');
  assert.equal(readFileSync(join(out, `deep/${'d'.repeat(90)}/${'f'.repeat(60)}`)).length, 1000);
});

test('writeCpioNewc output extracts with cpio and ends with the trailer', (t) => {
  const withParent: ArchiveEntry[] = [
    ...entries.slice(0, 4),
    { type: 'dir', path: `deep/${'d'.repeat(90)}`, mode: 0o755 },
    entries[4]!,
  ];
  const archive = writeCpioNewc(withParent);
  assert.equal(archive.length % 4, 0);
  assert.ok(archive.includes(Buffer.from('TRAILER!!!')));
  const out = extractWith(['sh', '-c', 'cpio -id --quiet < "$0"'], archive, t);
  assert.equal(readFileSync(join(out, 'bin/tool'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.equal(statSync(join(out, 'bin/tool')).mode & 0o777, 0o750);
  assert.equal(readlinkSync(join(out, 'bin/alias')), 'tool');
  assert.equal(readFileSync(join(out, `deep/${'d'.repeat(90)}/${'f'.repeat(60)}`)).length, 1000);
});

test('both writers are reproducible', () => {
  assert.deepEqual(writeTar(entries), writeTar(entries));
  assert.deepEqual(writeCpioNewc(entries), writeCpioNewc(entries));
});
