/**
 * Timings of the qemu backend on this host, with the tiny test guest (256 MiB, 1 vCPU):
 *   boot -> first counter line, pause + snapshot, restore of N clones at once -> each clone's next
 *   counter line. Run: node --import tsx packages/fcvm/test/bench/qemu-clone.ts [clones=2] [runs=3]
 * Everything lives in a temp dir that is removed at the end; every VM is stopped.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createQemu } from '../../src/hypervisor/qemu/index.js';
import type { VmHandle, VmSpec } from '../../src/hypervisor/types.js';
import { tinyGuest } from '../helpers/tiny-guest.js';
import { countsIn, waitForCountAbove } from '../helpers/vm-fixture.js';

const clones = Number(process.argv[2] ?? 2);
const runs = Number(process.argv[3] ?? 3);
const guest = await tinyGuest();
const qemu = await createQemu();
const root = await mkdtemp('/tmp/fcvm-qemu-bench-');
const vms: VmHandle[] = [];

function report(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await work();
  return [result, Math.round(performance.now() - start)];
}

try {
  report(`qemu backend, ${qemu.capabilities.hardwareAccelerated ? 'KVM' : 'TCG'}, ${clones} clones, ${runs} runs`);
  for (let run = 1; run <= runs; run++) {
    const dir = path.join(root, `run${run}`);
    await mkdir(dir);
    const spec: VmSpec = {
      vmId: `bench${run}`,
      vmDir: dir,
      kernelPath: guest.kernelPath,
      initrdPath: guest.initrdPath,
      bootArgs: guest.bootArgs,
      vcpus: 1,
      memoryMib: 256,
      hugepages: false,
      trackDirtyPages: false,
      disks: [],
      net: null,
      memoryFilePath: path.join(dir, 'memory'),
      netnsPath: null,
      metadata: null,
      consoleLogPath: path.join(dir, 'console.log'),
      noSwap: false,
    };
    const [, bootMs] = await timed(async () => {
      vms.push(await qemu.boot(spec));
      await waitForCountAbove(spec.consoleLogPath, -1);
    });
    const source = vms.at(-1)!;
    await waitForCountAbove(spec.consoleLogPath, 3);
    const snapshotDir = path.join(dir, 'snapshot');
    await mkdir(snapshotDir);
    const [files, snapshotMs] = await timed(async () => {
      await source.pause();
      return source.snapshot({ dir: snapshotDir, kind: 'full' });
    });
    await sleep(200);
    const count = (await countsIn(spec.consoleLogPath)).at(-1)!;
    await source.stop({ graceMs: 0 });
    const vmstateKib = Math.round((await stat(files.vmstatePath)).size / 1024);

    const cloneSpecs = await Promise.all(
      Array.from({ length: clones }, async (_, index) => {
        const cloneDir = path.join(dir, `clone${index}`);
        await mkdir(cloneDir);
        return {
          ...spec,
          vmId: `bench${run}-clone${index}`,
          vmDir: cloneDir,
          consoleLogPath: path.join(cloneDir, 'console.log'),
          vmstatePath: files.vmstatePath,
          memory: { backend: 'file' as const, path: files.memoryPath },
          resume: true,
        };
      }),
    );
    const started = performance.now();
    const restored = await Promise.all(
      cloneSpecs.map(async (cloneSpec) => {
        const [vm, restoreMs] = await timed(() => qemu.restore(cloneSpec));
        vms.push(vm);
        await waitForCountAbove(cloneSpec.consoleLogPath, count);
        return { restoreMs, nextLineMs: Math.round(performance.now() - started) };
      }),
    );
    report(
      `run ${run}: boot->first line ${bootMs} ms; pause+snapshot ${snapshotMs} ms (vmstate ${vmstateKib} KiB); ` +
        restored.map((r, i) => `clone${i} restore ${r.restoreMs} ms, next line ${r.nextLineMs} ms`).join('; '),
    );
    await Promise.all(vms.map((vm) => vm.stop({ graceMs: 0 })));
  }
} finally {
  await Promise.all(vms.map((vm) => vm.stop({ graceMs: 0 })));
  await rm(root, { recursive: true, force: true });
}
