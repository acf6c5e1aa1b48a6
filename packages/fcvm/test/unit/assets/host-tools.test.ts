import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isStaticElf } from '../../../src/assets/busybox.js';
import { HOST_TOOL_PACKAGES, runTool } from '../../../src/assets/host-tools.js';

test('every host tool names the Debian package that provides it', () => {
  for (const [tool, pkg] of Object.entries(HOST_TOOL_PACKAGES)) assert.match(pkg, /^[a-z0-9][a-z0-9.+-]+$/, tool);
  assert.equal(HOST_TOOL_PACKAGES.mmdebstrap, 'mmdebstrap');
  assert.equal(HOST_TOOL_PACKAGES['mkfs.ext4'], 'e2fsprogs');
});

test('runTool returns stdout and turns a failure into one sentence with the last stderr line', async () => {
  assert.equal(await runTool(['/bin/sh', '-c', 'echo out; echo err >&2'], { captureStdout: true }), 'out\n');
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
