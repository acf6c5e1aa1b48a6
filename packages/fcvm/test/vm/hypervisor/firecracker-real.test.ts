/**
 * The Firecracker adapter against a real Firecracker and KVM: boot a kernel with a tiny busybox
 * initramfs, pause, snapshot, resume, stop, then restore a clone from the snapshot's memory file.
 * Skips visibly when the host has no usable /dev/kvm or no firecracker binary (FCVM_FIRECRACKER_BIN
 * or PATH). The guest kernel is FCVM_TEST_FIRECRACKER_KERNEL (an uncompressed vmlinux) or the
 * vmlinux of the shared test assets (built on first use).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { dataDir as makeDataDir } from '../../../src/data-dir.js';
import { findOnPath } from '../../../src/hypervisor/firecracker/binary.js';
import { createFirecracker, probeFirecracker } from '../../../src/hypervisor/firecracker/index.js';
import type { VmSpec } from '../../../src/hypervisor/types.js';
import { testAssets } from '../../helpers/assets.js';

const probe = await probeFirecracker();
const busybox = findOnPath('busybox');
const skip = probe.usable ? false : `needs KVM and Firecracker: ${probe.reason}`;

async function guestKernel(): Promise<string> {
  const explicit = process.env.FCVM_TEST_FIRECRACKER_KERNEL;
  if (explicit) {
    assert.ok(existsSync(explicit), `FCVM_TEST_FIRECRACKER_KERNEL=${explicit} does not exist`);
    return explicit;
  }
  return (await testAssets()).vmlinux;
}

const READY = 'fcvm-real-test-ready';

/** An initramfs whose init prints a marker and then a counter every 200 ms (proof the guest runs). */
function buildInitramfs(dir: string): string {
  const tree = join(dir, 'initramfs');
  mkdirSync(join(tree, 'bin'), { recursive: true });
  copyFileSync(busybox!, join(tree, 'bin', 'busybox'));
  chmodSync(join(tree, 'bin', 'busybox'), 0o755);
  writeFileSync(
    join(tree, 'init'),
    `#!/bin/busybox sh\n/bin/busybox echo ${READY}\ni=0\nwhile true; do i=$((i+1)); /bin/busybox echo tick-$i; /bin/busybox usleep 200000; done\n`,
  );
  chmodSync(join(tree, 'init'), 0o755);
  const out = join(dir, 'initramfs.cpio');
  const cpio = spawnSync('sh', ['-c', 'find . | cpio -o -H newc > "$0"', out], {
    cwd: tree,
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 30_000,
  });
  assert.equal(cpio.status, 0, cpio.stderr?.toString());
  return out;
}

async function waitForConsole(path: string, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(path) && pattern.test(readFileSync(path, 'utf8'))) return;
    await sleep(100);
  }
  assert.fail(
    `${pattern} did not appear in ${path} within ${timeoutMs} ms:\n${existsSync(path) ? readFileSync(path, 'utf8').slice(-2000) : '(no log)'}`,
  );
}

// The first run on a machine may build the shared test assets (kernel extraction, rootfs): a long timeout.
const options = { skip, timeout: 900_000 };

test(
  'real Firecracker: boot, pause, snapshot, resume, stop, and restore a clone from the memory file',
  options,
  async (t) => {
    assert.ok(busybox, 'busybox (package busybox-static) is needed for the test initramfs');
    const kernel = await guestKernel();
    const dir = mkdtempSync(join(tmpdir(), 'fcvm-fc-real-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const hypervisor = await createFirecracker({ dataDir: makeDataDir(join(dir, 'data')) });
    const vmDir = join(dir, 'vm');
    mkdirSync(vmDir);
    const spec: VmSpec = {
      vmId: 'fcreal1',
      vmDir,
      kernelPath: kernel,
      initrdPath: buildInitramfs(dir),
      bootArgs: 'quiet rdinit=/init',
      vcpus: 1,
      memoryMib: 128,
      hugepages: false,
      trackDirtyPages: true,
      disks: [],
      net: null,
      memoryFilePath: null,
      netnsPath: null,
      metadata: null,
      consoleLogPath: join(vmDir, 'console.log'),
      noSwap: false,
    };
    const vm = await hypervisor.boot(spec);
    t.after(() => vm.stop({ graceMs: 0 }).then(() => undefined));
    await waitForConsole(spec.consoleLogPath, new RegExp(READY), 30_000);
    await vm.pause();
    const snapDir = join(dir, 'snap');
    mkdirSync(snapDir);
    const files = await vm.snapshot({ dir: snapDir, kind: 'full' });
    assert.ok(existsSync(files.memoryPath) && existsSync(files.vmstatePath));
    await vm.resume();
    await vm.stop({ graceMs: 0 });
    assert.equal(existsSync(join(vmDir, 'firecracker.sock')), false);

    const cloneDir = join(dir, 'clone');
    mkdirSync(cloneDir);
    const clone = await hypervisor.restore({
      ...spec,
      vmId: 'fcreal2',
      vmDir: cloneDir,
      consoleLogPath: join(cloneDir, 'console.log'),
      vmstatePath: files.vmstatePath,
      memory: { backend: 'file', path: files.memoryPath },
      trackDirtyPages: false,
      resume: true,
    });
    t.after(() => clone.stop({ graceMs: 0 }).then(() => undefined));
    // The restored guest keeps counting where the snapshot left it.
    await waitForConsole(join(cloneDir, 'console.log'), /tick-\d+/, 30_000);
    await clone.stop({ graceMs: 0 });
    assert.equal(existsSync(join(cloneDir, 'firecracker.sock')), false);
  },
);
