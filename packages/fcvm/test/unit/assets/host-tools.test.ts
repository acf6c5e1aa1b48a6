import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isStaticElf } from '../../../src/assets/busybox.js';
import { findHostTool, HOST_TOOL_PACKAGES, missingHostToolError, runTool } from '../../../src/assets/host-tools.js';

test('every host tool names the Debian package that provides it', () => {
  for (const [tool, pkg] of Object.entries(HOST_TOOL_PACKAGES)) assert.match(pkg, /^[a-z0-9][a-z0-9.+-]+$/, tool);
  assert.equal(HOST_TOOL_PACKAGES.mmdebstrap, 'mmdebstrap');
  assert.equal(HOST_TOOL_PACKAGES['mkfs.ext4'], 'e2fsprogs');
});

test('runTool returns stdout and turns a failure into one sentence with the last stderr line', async () => {
  assert.equal(await runTool(['/bin/sh', '-c', 'echo out; echo err >&2']), 'out\n');
  await assert.rejects(runTool(['/bin/sh', '-c', 'echo first >&2; echo "disk full" >&2; exit 3']), {
    code: 'ASSET_BUILD',
    message: '/bin/sh exited with status 3: disk full',
  });
});

test('isStaticElf tells static from dynamic executables', () => {
  assert.equal(isStaticElf(readFileSync('/bin/busybox')), true, 'busybox-static');
  assert.equal(isStaticElf(readFileSync(process.execPath)), false, 'node is dynamically linked');
  assert.equal(isStaticElf(Buffer.from('#!/bin/sh\n')), false);
});

test('a missing host tool is one sentence naming the Debian package; present tools are found outside PATH too', () => {
  const err = missingHostToolError('mmdebstrap', 'Building the guest root filesystem');
  assert.equal(err.code, 'MISSING_HOST_TOOL');
  assert.equal(err.exitStatus, 1);
  assert.equal(
    err.message,
    'Building the guest root filesystem needs `mmdebstrap`, which is not installed: install the Debian package mmdebstrap (apt-get install mmdebstrap).',
  );
  assert.equal(findHostTool('mkfs.ext4', { PATH: '/nonexistent' }), '/usr/sbin/mkfs.ext4');
  assert.equal(findHostTool('fcvm-no-such-tool', { PATH: '/usr/bin' }), undefined);
});
