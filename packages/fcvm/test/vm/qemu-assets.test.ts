/**
 * The qemu backend with fcvm's own guest (the `fcvm setup` assets: cloud kernel, stage-1 initrd,
 * Debian rootfs through a qcow2 overlay). The injected "agent" is a test script run by the guest's
 * Node: it prints `FCVM_TEST_COUNT n` every 0.5 s and echoes the agent channel. The VM is paused,
 * resumed and snapshotted; two clones restored at the same time from the one memory file both
 * continue counting; afterwards no process, socket or cgroup is left and the memory file is unchanged.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { AGENT_PORT_NAME } from '@fcvm/protocol';
import { type AssetPaths, createAgentInitrd } from '../../src/assets/index.js';
import { createQemu } from '../../src/hypervisor/qemu/index.js';
import type { Hypervisor, RestoreSpec, VmHandle, VmSpec } from '../../src/hypervisor/types.js';
import { testAssets } from '../helpers/assets.js';
import {
  isAlive,
  memoryCgroupOf,
  processesMentioning,
  sha256,
  socketsBelow,
  VmRegistry,
} from '../helpers/vm-fixture.js';

const execFileAsync = promisify(execFile);
const MEMORY_MIB = 512;

/** The guest's stand-in agent (guest Node 18, no dependencies). */
const COUNTER_AGENT = `
import fs from 'node:fs';
let n = 0;
setInterval(() => console.log('FCVM_TEST_COUNT ' + n++), 500);
const dir = '/sys/class/virtio-ports';
const port = fs.readdirSync(dir).find((p) => {
  try { return fs.readFileSync(dir + '/' + p + '/name', 'utf8').trim() === ${JSON.stringify(AGENT_PORT_NAME)}; }
  catch { return false; }
});
if (port !== undefined) {
  const fd = fs.openSync('/dev/' + port, 'r+');
  const buffer = Buffer.alloc(4096);
  // A read returns 0 while no host end is connected: poll again shortly.
  const echo = () => fs.read(fd, buffer, 0, buffer.length, null, (err, count) => {
    if (err || count === 0) { setTimeout(echo, 100); return; }
    fs.write(fd, buffer.subarray(0, count), () => echo());
  });
  echo();
}
`;

let root: string;
let assets: AssetPaths;
let qemu: Hypervisor;
const vms = new VmRegistry();

before(async () => {
  root = await mkdtemp('/tmp/fcvm-qemu-assets-');
  process.env.FCVM_DATA_DIR = path.join(root, 'data');
  assets = await testAssets();
  qemu = await createQemu();
});

after(async () => {
  await vms.stopAll();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

async function counts(consoleLog: string): Promise<number[]> {
  const text = await readFile(consoleLog, 'utf8');
  return [...text.matchAll(/^FCVM_TEST_COUNT (\d+)\r?$/gm)].map((match) => Number(match[1]));
}

async function countAbove(consoleLog: string, above: number, timeoutMs = 120_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const latest = (await counts(consoleLog).catch((): number[] => [])).at(-1);
    if (latest !== undefined && latest > above) return latest;
    if (Date.now() > deadline) throw new Error(`${consoleLog} never counted above ${above} (last: ${latest})`);
    await sleep(100);
  }
}

async function echo(vm: VmHandle, text: string): Promise<void> {
  const socket = await vm.openChannel(AbortSignal.timeout(10_000));
  try {
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    const deadline = Date.now() + 30_000;
    while (!received.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no echo of ${text} (got ${JSON.stringify(received)})`);
      socket.write(text);
      await sleep(500);
    }
  } finally {
    socket.destroy();
  }
}

test('fcvm assets: boot, pause/resume, snapshot, two concurrent clones, clean up', { timeout: 600_000 }, async () => {
  const vmDir = path.join(root, 'source');
  await mkdir(vmDir);
  const agentScript = path.join(root, 'counter-agent.mjs');
  await writeFile(agentScript, COUNTER_AGENT);
  const initrd = path.join(vmDir, 'initrd.cpio.gz');
  await createAgentInitrd({ baseInitrd: assets.initrd, agentScript, outPath: initrd });
  const overlay = path.join(vmDir, 'root.qcow2');
  await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', assets.rootfs, '-F', 'raw', overlay]);
  const source: VmSpec = {
    vmId: 'assets-source',
    vmDir,
    kernelPath: assets.kernel,
    initrdPath: initrd,
    bootArgs: 'quiet',
    vcpus: 2,
    memoryMib: MEMORY_MIB,
    hugepages: false,
    trackDirtyPages: false,
    disks: [{ id: 'rootfs', path: overlay, readOnly: false, format: 'qcow2' }],
    net: null,
    memoryFilePath: path.join(vmDir, 'memory'),
    netnsPath: null,
    metadata: null,
    consoleLogPath: path.join(vmDir, 'console.log'),
    noSwap: true,
  };
  const vm = vms.add(await qemu.boot(source));
  await countAbove(source.consoleLogPath, 1, 180_000);
  await echo(vm, 'ping-source');
  assert.match((await memoryCgroupOf(vm.pid)) ?? '', /fcvm\.slice\/fcvm-\d+\.scope$/);

  await vm.pause();
  await sleep(500);
  const frozen = (await counts(source.consoleLogPath)).at(-1)!;
  await sleep(1500);
  assert.equal((await counts(source.consoleLogPath)).at(-1), frozen, 'paused guest prints nothing');
  await vm.resume();
  await countAbove(source.consoleLogPath, frozen);

  const snapshotDir = path.join(root, 'snapshot');
  await mkdir(snapshotDir);
  await vm.pause();
  await sleep(500);
  const atSnapshot = (await counts(source.consoleLogPath)).at(-1)!;
  const files = await vm.snapshot({ dir: snapshotDir, kind: 'full' });
  await copyFile(overlay, path.join(snapshotDir, 'root.qcow2'));
  await vm.stop({ graceMs: 0 });
  assert.equal(isAlive(vm.pid), false);
  const memoryHash = await sha256(files.memoryPath);

  const clones: { spec: RestoreSpec; vm: VmHandle }[] = [];
  const specs = await Promise.all(
    ['clone-a', 'clone-b'].map(async (name): Promise<RestoreSpec> => {
      const dir = path.join(root, name);
      await mkdir(dir);
      const disk = path.join(dir, 'root.qcow2');
      await copyFile(path.join(snapshotDir, 'root.qcow2'), disk);
      return {
        ...source,
        vmId: name,
        vmDir: dir,
        disks: [{ id: 'rootfs', path: disk, readOnly: false, format: 'qcow2' }],
        consoleLogPath: path.join(dir, 'console.log'),
        vmstatePath: files.vmstatePath,
        memory: { backend: 'file', path: files.memoryPath },
        trackDirtyPages: false,
        resume: true,
      };
    }),
  );
  const restored = await Promise.all(specs.map((spec) => qemu.restore(spec)));
  restored.forEach((clone, index) => {
    clones.push({ spec: specs[index]!, vm: vms.add(clone) });
  });
  for (const { spec, vm: clone } of clones) {
    const next = await countAbove(spec.consoleLogPath, atSnapshot);
    const seen = await counts(spec.consoleLogPath);
    assert.ok(seen[0]! > atSnapshot, `${spec.vmId} continued from ${atSnapshot}, first line ${seen[0]}`);
    await countAbove(spec.consoleLogPath, next + 1);
    await echo(clone, `ping-${spec.vmId}`);
  }
  await Promise.all(clones.map(({ vm: clone }) => clone.stop({ graceMs: 0 })));

  assert.equal(await sha256(files.memoryPath), memoryHash, 'the clones never wrote to memory.bin');
  for (const { spec, vm: clone } of [{ spec: source, vm }, ...clones]) {
    assert.equal(isAlive(clone.pid), false);
    assert.deepEqual(await socketsBelow(spec.vmDir), []);
  }
  assert.deepEqual(await processesMentioning(root), []);
});
