/**
 * The guest clock keeps the host's pace: the QEMU backend tells the guest kernel the host's TSC rate
 * (hypervisor/qemu/host-clock.ts). The guest prints its time once a second for 30 s on one exec
 * session; each line's offset is the host's time at arrival minus the guest's. Delivery only adds
 * delay, so the smallest offset of the first and of the last samples is the best estimate of the
 * true offset at either end; their difference is the drift.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fcvmSync, spawnFcvm, useVmTestEnv } from '../helpers/vm-env.js';

const IMAGE = 'localhost/fcvm-busybox';
const SMALL = ['--mem', '512', '--cpu', '2', '--hypervisor', 'qemu'];
const SECONDS = 30;
const EDGE_SAMPLES = 6;

describe('guest clock', () => {
  const env = useVmTestEnv('fcvm-clock-');

  test(`drifts less than 100 ms from the host over ${SECONDS} s`, async () => {
    const vm = spawnFcvm(['podman', 'run', '--name', 'clock', ...SMALL, IMAGE, 'sleep', '600'], env().env);
    try {
      await vm.waitForOutput(/is up/, 240_000);
      // The VM is up before its record says running (exec refuses until then): poll, bounded.
      const deadline = Date.now() + 60_000;
      while (fcvmSync(['exec', '--name', 'clock', '--vm', '--', 'true'], env().env).status !== 0) {
        assert.ok(Date.now() < deadline, 'exec into the VM works within 60 s of boot');
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      const samples: number[] = [];
      const printer = spawnFcvm(
        [
          'exec',
          '--name',
          'clock',
          '--vm',
          '--',
          'sh',
          '-c',
          `i=0; while [ $i -le ${SECONDS} ]; do date +%s%N; sleep 1; i=$((i+1)); done`,
        ],
        env().env,
      );
      let pending = '';
      printer.child.stdout.on('data', (chunk: string) => {
        const arrivedMs = Date.now();
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          if (/^\d+$/.test(line)) samples.push(arrivedMs - Number(BigInt(line) / 1_000_000n));
        }
      });
      assert.equal(await printer.exited(180_000), 0, printer.stderr());
      assert.ok(samples.length >= SECONDS, `a sample a second (${samples.length})`);
      const start = Math.min(...samples.slice(0, EDGE_SAMPLES));
      const end = Math.min(...samples.slice(-EDGE_SAMPLES));
      const drift = end - start;
      process.stderr.write(`guest clock: offset ${start} ms at the start, ${end} ms after ${SECONDS} s\n`);
      assert.ok(Math.abs(drift) < 100, `drift ${drift} ms over ${SECONDS} s (offsets ${samples.join(' ')})`);
    } finally {
      vm.child.kill('SIGTERM');
      await vm.exited(60_000);
    }
  });
});
