/**
 * The qemu backend against real QEMU and a real kernel: boot (disk, tap in a netns, channel,
 * --no-swap), pause/resume, snapshot to files, two clones restored at once from one memory file,
 * a full-stream snapshot without a memory file, lifetime bound to the parent, and cleanup.
 *
 * Guest: test/helpers/tiny-guest.ts (Debian cloud kernel + busybox initramfs printing a counter).
 * KVM is used when the host really offers it, else TCG; every QEMU dies with this test process
 * (pdeathsig) and the `after` hook stops all VMs whatever happened.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findMemoryHierarchy } from '../../src/cgroup/memory-hierarchy.js';
import { SLICE_NAME, scopeName, sweepStaleSwapScopes } from '../../src/cgroup/swap-scope.js';
import { isFcvmError } from '../../src/errors.js';
import { createQemu } from '../../src/hypervisor/qemu/index.js';
import type { Hypervisor, RestoreSpec, VmHandle, VmSpec } from '../../src/hypervisor/types.js';
import { type TinyGuest, tinyGuest } from '../helpers/tiny-guest.js';
import {
  countsIn,
  isAlive,
  memoryCgroupOf,
  processesMentioning,
  readlinkOrNull,
  sha256,
  socketsBelow,
  TestNetns,
  VmRegistry,
  waitForConsole,
  waitForCountAbove,
} from '../helpers/vm-fixture.js';

const execFileAsync = promisify(execFile);
const MEMORY_MIB = 256;
const DISK_MARKER = 'FCVM_TEST_DISK_MARKER_1234';
const GUEST_MAC = '52:54:00:12:34:56';

let root: string;
let guest: TinyGuest;
let qemu: Hypervisor;
let netns: TestNetns;
let baseDisk: string;
const vms = new VmRegistry();

before(async () => {
  // Short path: Unix socket paths are limited to 107 bytes.
  root = await mkdtemp('/tmp/fcvm-qemu-test-');
  process.env.FCVM_DATA_DIR = path.join(root, 'data');
  guest = await tinyGuest();
  qemu = await createQemu();
  netns = await TestNetns.create(`fcvm-qt-${process.pid}`, ['tap0', 'tap1', 'tap2', 'tap3']);
  baseDisk = path.join(root, 'base.raw');
  const disk = Buffer.alloc(1024 * 1024);
  disk.write(`${DISK_MARKER}\n`);
  await writeFile(baseDisk, disk);
});

after(async () => {
  await vms.stopAll();
  await netns?.remove();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

async function newVmDir(name: string): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(dir);
  return dir;
}

async function qcow2Overlay(file: string): Promise<void> {
  await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', baseDisk, '-F', 'raw', file]);
}

async function bootSpec(name: string, overrides: Partial<VmSpec> = {}): Promise<VmSpec> {
  const vmDir = await newVmDir(name);
  const overlay = path.join(vmDir, 'root.qcow2');
  await qcow2Overlay(overlay);
  return {
    vmId: name,
    vmDir,
    kernelPath: guest.kernelPath,
    initrdPath: guest.initrdPath,
    bootArgs: guest.bootArgs,
    vcpus: 1,
    memoryMib: MEMORY_MIB,
    hugepages: false,
    trackDirtyPages: false,
    disks: [{ id: 'rootfs', path: overlay, readOnly: false, format: 'qcow2' }],
    net: { tapDevice: 'tap0', guestMac: GUEST_MAC },
    memoryFilePath: path.join(vmDir, 'memory'),
    netnsPath: netns.path,
    metadata: null,
    consoleLogPath: path.join(vmDir, 'console.log'),
    noSwap: false,
    ...overrides,
  };
}

/** A clone of `source`'s snapshot: its own dir, console, tap and copy of the (paused) disk overlay. */
async function cloneSpec(name: string, source: VmSpec, snapshotDir: string, tap: string): Promise<RestoreSpec> {
  const vmDir = await newVmDir(name);
  const overlay = path.join(vmDir, 'root.qcow2');
  await copyFile(path.join(snapshotDir, 'root.qcow2'), overlay);
  return {
    ...source,
    vmId: name,
    vmDir,
    disks: [{ id: 'rootfs', path: overlay, readOnly: false, format: 'qcow2' }],
    net: source.net === null ? null : { tapDevice: tap, guestMac: GUEST_MAC },
    consoleLogPath: path.join(vmDir, 'console.log'),
    vmstatePath: path.join(snapshotDir, 'vmstate.bin'),
    memory: { backend: 'file', path: path.join(snapshotDir, 'memory.bin') },
    trackDirtyPages: false,
    resume: true,
  };
}

async function echoOverChannel(vm: VmHandle, text: string): Promise<string> {
  const socket = await vm.openChannel(AbortSignal.timeout(10_000));
  try {
    let received = '';
    const deadline = Date.now() + 30_000;
    // The guest's echo loop may not have the port open yet: resend until the echo arrives.
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    while (!received.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no echo of ${text} on the channel (got ${JSON.stringify(received)})`);
      socket.write(`${text}\n`);
      await sleep(500);
    }
    return text;
  } finally {
    socket.destroy();
  }
}

async function assertGone(vm: VmHandle, vmDir: string): Promise<void> {
  assert.equal(isAlive(vm.pid), false, `QEMU ${vm.pid} is gone`);
  assert.deepEqual(await socketsBelow(vmDir), [], 'no sockets left in the VM dir');
}

let source: VmSpec;
let sourceVm: VmHandle;

test('boots with a qcow2 disk, a tap in a netns, the agent channel and --no-swap', { timeout: 180_000 }, async () => {
  source = await bootSpec('source', { noSwap: true });
  sourceVm = vms.add(await qemu.boot(source));
  assert.equal(sourceVm.kind, 'qemu');
  assert.equal(sourceVm.capabilities.channel, 'virtio-serial');
  assert.equal(sourceVm.capabilities.diffSnapshots, false);
  assert.equal(sourceVm.capabilities.uffdRestore, false);
  // Truthful: whatever QEMU reported through query-kvm, and consistent with the factory's expectation.
  assert.equal(sourceVm.capabilities.hardwareAccelerated, qemu.capabilities.hardwareAccelerated);

  await waitForConsole(source.consoleLogPath, new RegExp(`^TINY_DISK ${DISK_MARKER}`, 'm'));
  await waitForConsole(source.consoleLogPath, new RegExp(`^TINY_NET ${GUEST_MAC}`, 'm'));
  await waitForCountAbove(source.consoleLogPath, 1);
  assert.equal(await echoOverChannel(sourceVm, 'hello-source'), 'hello-source');

  // QEMU runs inside the namespace (nsenter) ...
  const netnsInode = (await stat(netns.path)).ino;
  assert.equal(await readlinkOrNull(`/proc/${sourceVm.pid}/ns/net`), `net:[${netnsInode}]`);
  // ... in its own swap-disabled scope.
  assert.equal(await memoryCgroupOf(sourceVm.pid), `/${SLICE_NAME}/${scopeName(sourceVm.pid)}`);
  // The RAM file exists with the guest's size and mode 0600.
  const ram = await stat(source.memoryFilePath!);
  assert.equal(ram.size, MEMORY_MIB * 1024 * 1024);
  assert.equal(ram.mode & 0o777, 0o600);
});

test('pause stops the guest and resume continues it', { timeout: 120_000 }, async () => {
  await sourceVm.pause();
  await sleep(300); // a line being written when the VM stopped
  const frozenAt = (await countsIn(source.consoleLogPath)).at(-1)!;
  await sleep(2000);
  assert.equal((await countsIn(source.consoleLogPath)).at(-1), frozenAt, 'no output while paused');
  await sourceVm.resume();
  await waitForCountAbove(source.consoleLogPath, frozenAt);
});

let snapshotDir: string;
let countAtSnapshot: number;

test('snapshot of a paused VM writes memory.bin and vmstate.bin; the source resumes', {
  timeout: 120_000,
}, async () => {
  await assert.rejects(
    sourceVm.snapshot({ dir: root, kind: 'full' }),
    (err: unknown) => isFcvmError(err) && /must be paused/.test(err.message),
  );
  snapshotDir = await newVmDir('snapshot');
  await sourceVm.pause();
  await sleep(300);
  countAtSnapshot = (await countsIn(source.consoleLogPath)).at(-1)!;
  const files = await sourceVm.snapshot({ dir: snapshotDir, kind: 'full' });
  // Disks belong to the caller: copy the overlay while the VM is still paused.
  await copyFile(source.disks[0]!.path, path.join(snapshotDir, 'root.qcow2'));
  assert.deepEqual(files, {
    memoryPath: path.join(snapshotDir, 'memory.bin'),
    vmstatePath: path.join(snapshotDir, 'vmstate.bin'),
    kind: 'full',
  });
  const memory = await stat(files.memoryPath);
  const vmstate = await stat(files.vmstatePath);
  assert.equal(memory.size, MEMORY_MIB * 1024 * 1024);
  // x-ignore-shared: the RAM is in memory.bin, vmstate.bin only holds device state.
  assert.ok(vmstate.size > 0 && vmstate.size < 4 * 1024 * 1024, `vmstate.bin is ${vmstate.size} bytes`);
  assert.equal(vmstate.mode & 0o777, 0o600);
  assert.equal(await sha256(files.memoryPath), await sha256(source.memoryFilePath!), 'copy equals the paused RAM');

  await assert.rejects(
    sourceVm.snapshot({ dir: snapshotDir, kind: 'diff' }),
    (err: unknown) => isFcvmError(err) && /cannot take diff snapshots/.test(err.message),
  );
  await sourceVm.resume();
  await waitForCountAbove(source.consoleLogPath, countAtSnapshot);
});

test('two clones restored at the same time from one memory file both continue', { timeout: 240_000 }, async () => {
  const memoryPath = path.join(snapshotDir, 'memory.bin');
  const hashBefore = await sha256(memoryPath);
  const [specA, specB] = await Promise.all([
    cloneSpec('clone-a', source, snapshotDir, 'tap1'),
    cloneSpec('clone-b', source, snapshotDir, 'tap2'),
  ]);
  const [cloneA, cloneB] = await Promise.all([qemu.restore(specA), qemu.restore(specB)]);
  vms.add(cloneA);
  vms.add(cloneB);
  assert.notEqual(cloneA.pid, cloneB.pid);

  // Both continue from the snapshot's counter, not from zero: they resumed the saved guest.
  const [nextA, nextB] = await Promise.all([
    waitForCountAbove(specA.consoleLogPath, countAtSnapshot),
    waitForCountAbove(specB.consoleLogPath, countAtSnapshot),
  ]);
  for (const spec of [specA, specB]) {
    const counts = await countsIn(spec.consoleLogPath);
    assert.ok(counts[0]! > countAtSnapshot, `${spec.vmId} started at ${counts[0]} after snapshot ${countAtSnapshot}`);
    assert.doesNotMatch(await readFile(spec.consoleLogPath, 'utf8'), /TINY_BOOTED/, `${spec.vmId} did not reboot`);
  }
  assert.ok(nextA > countAtSnapshot && nextB > countAtSnapshot);
  // Each clone has its own channel (a new QEMU process: a new session).
  assert.equal(await echoOverChannel(cloneA, 'hello-a'), 'hello-a');
  assert.equal(await echoOverChannel(cloneB, 'hello-b'), 'hello-b');
  // Keep both running side by side for a while, then stop them.
  const [laterA, laterB] = await Promise.all([
    waitForCountAbove(specA.consoleLogPath, nextA + 2),
    waitForCountAbove(specB.consoleLogPath, nextB + 2),
  ]);
  assert.ok(laterA > nextA && laterB > nextB);

  const [exitA, exitB] = await Promise.all([cloneA.stop({ graceMs: 500 }), cloneB.stop({ graceMs: 500 })]);
  assert.deepEqual([exitA, exitB], [await cloneA.exited, await cloneB.exited]);
  await assertGone(cloneA, specA.vmDir);
  await assertGone(cloneB, specB.vmDir);
  // MAP_PRIVATE: the clones' writes never reached the snapshot's memory file.
  assert.equal(await sha256(memoryPath), hashBefore, 'memory.bin unchanged');
});

test('stop is idempotent, releases the --no-swap scope and removes the sockets', { timeout: 60_000 }, async () => {
  const pid = sourceVm.pid;
  const [first, second] = await Promise.all([sourceVm.stop({ graceMs: 500 }), sourceVm.stop()]);
  assert.deepEqual(first, second);
  assert.deepEqual(await sourceVm.stop(), first);
  await assertGone(sourceVm, source.vmDir);
  const hierarchy = findMemoryHierarchy();
  if (hierarchy !== null) {
    const scopes = await readdir(path.join(hierarchy.mountPoint, SLICE_NAME)).catch((): string[] => []);
    assert.ok(!scopes.includes(scopeName(pid)), 'scope removed');
  }
});

test('a VM without a memory file snapshots into one stream and restores from it', { timeout: 180_000 }, async () => {
  const spec = await bootSpec('anon', { memoryFilePath: null, net: null, netnsPath: null });
  const vm = vms.add(await qemu.boot(spec));
  await waitForCountAbove(spec.consoleLogPath, 1);
  await vm.pause();
  await sleep(300);
  const count = (await countsIn(spec.consoleLogPath)).at(-1)!;
  const dir = await newVmDir('anon-snapshot');
  const files = await vm.snapshot({ dir, kind: 'full' });
  await copyFile(spec.disks[0]!.path, path.join(dir, 'root.qcow2'));
  assert.equal((await stat(files.memoryPath)).size, 0, 'memory.bin empty: the RAM is in vmstate.bin');
  assert.ok((await stat(files.vmstatePath)).size > 4 * 1024 * 1024, 'vmstate.bin carries the RAM');
  await vm.stop({ graceMs: 0 });
  await assertGone(vm, spec.vmDir);

  await assert.rejects(
    qemu.restore({
      ...(await cloneSpec('uffd', spec, dir, 'tap3')),
      memory: { backend: 'uffd', socketPath: path.join(root, 'uffd.sock') },
    }),
    (err: unknown) => isFcvmError(err) && /not supported by the qemu backend/.test(err.message),
  );
  const cloneSpecAnon = await cloneSpec('anon-clone', spec, dir, 'tap3');
  const clone = vms.add(await qemu.restore(cloneSpecAnon));
  await waitForCountAbove(cloneSpecAnon.consoleLogPath, count);
  await clone.stop({ graceMs: 0 });
  await assertGone(clone, cloneSpecAnon.vmDir);
});

test('restore without resume leaves the clone paused until resume()', { timeout: 120_000 }, async () => {
  const spec = { ...(await cloneSpec('paused-clone', source, snapshotDir, 'tap3')), resume: false };
  const clone = vms.add(await qemu.restore(spec));
  await sleep(2000);
  assert.deepEqual(await countsIn(spec.consoleLogPath), [], 'no output while paused');
  await clone.resume();
  await waitForCountAbove(spec.consoleLogPath, countAtSnapshot);
  await clone.stop({ graceMs: 0 });
  await assertGone(clone, spec.vmDir);
});

test('a clone can be snapshotted in turn (its RAM travels in the stream) and restored', {
  timeout: 180_000,
}, async () => {
  const spec = await cloneSpec('clone-parent', source, snapshotDir, 'tap3');
  const clone = vms.add(await qemu.restore(spec));
  const running = await waitForCountAbove(spec.consoleLogPath, countAtSnapshot + 2);
  await clone.pause();
  await sleep(300);
  const count = (await countsIn(spec.consoleLogPath)).at(-1)!;
  assert.ok(count >= running);
  const dir = await newVmDir('clone-snapshot');
  const files = await clone.snapshot({ dir, kind: 'full' });
  await copyFile(spec.disks[0]!.path, path.join(dir, 'root.qcow2'));
  // The clone's own pages are private copies, not in the parent's memory file: they go in the stream.
  assert.equal((await stat(files.memoryPath)).size, 0);
  assert.ok((await stat(files.vmstatePath)).size > 4 * 1024 * 1024);
  // QEMU takes one snapshot per pause.
  const again = await newVmDir('clone-snapshot-again');
  await assert.rejects(
    clone.snapshot({ dir: again, kind: 'full' }),
    (err: unknown) => isFcvmError(err) && err.code === 'STATE' && /resume it first/.test(err.message),
  );
  await clone.stop({ graceMs: 0 });
  await assertGone(clone, spec.vmDir);

  // Same machine as the clone (a restore must describe the saved devices exactly), on the tap the clone freed.
  const grandchildSpec = await cloneSpec('grandchild', source, dir, 'tap3');
  const grandchild = vms.add(await qemu.restore(grandchildSpec));
  await waitForCountAbove(grandchildSpec.consoleLogPath, count);
  await grandchild.stop({ graceMs: 0 });
  await assertGone(grandchild, grandchildSpec.vmDir);
});

test('a command line QEMU refuses fails with its complaint and leaves nothing behind', {
  timeout: 60_000,
}, async () => {
  const spec = await bootSpec('broken', { kernelPath: path.join(root, 'no-such-kernel'), net: null, netnsPath: null });
  await assert.rejects(qemu.boot(spec), (err: unknown) => {
    assert.ok(isFcvmError(err));
    assert.match(err.message, /QEMU said: .*no-such-kernel/);
    return true;
  });
  assert.deepEqual(await socketsBelow(spec.vmDir), []);
  await assert.rejects(stat(spec.memoryFilePath!), { code: 'ENOENT' }, 'the RAM file it created is removed');
  assert.deepEqual(await processesMentioning(spec.vmDir), []);
});

test('QEMU dies when its parent is killed with SIGKILL', { timeout: 120_000 }, async () => {
  const spec = await bootSpec('orphan', { net: null, netnsPath: null, noSwap: true });
  const program = fileURLToPath(new URL('../helpers/qemu-boot-and-hold.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', program, JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    const deadline = Date.now() + 60_000;
    while (!/QEMU_PID (\d+)/.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`child did not boot a VM: ${output}`);
      await sleep(100);
    }
    const qemuPid = Number(/QEMU_PID (\d+)/.exec(output)![1]);
    assert.ok(isAlive(qemuPid));
    child.kill('SIGKILL');
    const gone = Date.now() + 10_000;
    while (isAlive(qemuPid) && Date.now() < gone) await sleep(50);
    assert.equal(isAlive(qemuPid), false, 'QEMU followed its parent');
    // Its fcvm could not release the --no-swap scope; the next run's sweep does.
    const removed = await sweepStaleSwapScopes();
    assert.ok(
      removed.some((scope) => scope.endsWith(scopeName(qemuPid))),
      `swept ${removed.join(', ')}`,
    );
  } finally {
    child.kill('SIGKILL');
  }
});

test('nothing is left behind: no QEMU, no sockets', { timeout: 30_000 }, async () => {
  await vms.stopAll();
  assert.deepEqual(await processesMentioning(root), [], 'no process refers to the test dir');
  // The orphan test's fcvm died without cleaning up: its sockets are the only expected leftovers.
  const leftovers = (await socketsBelow(root)).filter((socket) => !socket.includes(`${path.sep}orphan${path.sep}`));
  assert.deepEqual(leftovers, []);
});
