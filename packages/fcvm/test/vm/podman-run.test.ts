/**
 * `fcvm podman run` and `fcvm exec` end to end: real VMs (QEMU, KVM or TCG), the real agent, real
 * podman in the guest, the busybox test image from fcvm's own image store (no registry).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { probeFirecracker } from '../../src/hypervisor/firecracker/index.js';
import {
  fcvmSync,
  processesMatching,
  type RunningFcvm,
  spawnFcvm,
  testResult,
  type VmTestEnv,
  vmTestEnv,
} from '../helpers/vm-env.js';

const IMAGE = 'localhost/fcvm-busybox';

const firecracker = await probeFirecracker();
const BACKENDS = [
  { hypervisor: 'qemu', skip: false as const },
  {
    hypervisor: 'firecracker',
    skip: firecracker.usable ? (false as const) : `needs KVM and Firecracker: ${firecracker.reason}`,
  },
];

for (const { hypervisor, skip } of BACKENDS) {
  /** Small VMs keep TCG boots quick. */
  const SMALL = ['--mem', '512', '--cpu', '2', '--hypervisor', hypervisor];

  describe(`fcvm podman run (${hypervisor})`, { skip }, () => {
    let t: VmTestEnv;
    before(async () => {
      t = await vmTestEnv();
    });
    afterEach((test) => t.noteResult(testResult(test)));
    after(() => t.cleanup());

    /** Polls `fcvm ls --json` until the VM's container runs; returns its record. */
    async function waitHealthy(name: string, run: RunningFcvm): Promise<Record<string, unknown>> {
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline) {
        const ls = fcvmSync(['ls', '--json'], t.env);
        assert.equal(ls.status, 0, ls.stderr);
        const record = (JSON.parse(ls.stdout) as Array<Record<string, unknown>>).find((r) => r.name === name);
        if (record?.health_status === 'healthy') return record;
        if (run.child.exitCode !== null) assert.fail(`fcvm exited early: ${run.stderr()}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.fail(`${name} did not become healthy in 120 s`);
    }

    function assertNothingLeft(): void {
      assert.deepEqual(readdirSync(join(t.dataDir, 'vms')), [], 'no VM directory left');
      assert.deepEqual(
        readdirSync(join(t.dataDir, 'state')).filter((f) => f.endsWith('.json')),
        [],
        'no registry record left',
      );
      assert.deepEqual(processesMatching(t.dataDir), [], 'no process of this test left');
    }

    test('echo hello: stdout is exactly the container output, exit 0', async () => {
      const run = spawnFcvm(['podman', 'run', '--name', 'hello', ...SMALL, IMAGE, 'echo', 'hello'], t.env);
      assert.equal(await run.exited(), 0, run.stderr());
      assert.equal(run.stdout(), 'hello\n');
      assertNothingLeft();
    });

    test('stdout and stderr stay separate and the exit status comes back', async () => {
      const run = spawnFcvm(
        ['podman', 'run', '--name', 'streams', ...SMALL, IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 7'],
        t.env,
      );
      assert.equal(await run.exited(), 7, run.stderr());
      assert.equal(run.stdout(), 'out\n');
      assert.match(run.stderr(), /^err$/m);
      assert.doesNotMatch(run.stdout(), /err/);
      assertNothingLeft();
    });

    test('-i forwards piped stdin to the container', async () => {
      const run = spawnFcvm(['podman', 'run', '--name', 'cat', '-i', ...SMALL, IMAGE, 'cat'], t.env);
      run.child.stdin.end('line one\nline two\n');
      assert.equal(await run.exited(), 0, run.stderr());
      assert.equal(run.stdout(), 'line one\nline two\n');
    });

    test('-t gives the container a terminal and Ctrl-C interrupts it', async () => {
      const tty = spawnFcvm(['podman', 'run', '--name', 'tty', '-t', ...SMALL, IMAGE, 'tty'], t.env, { pty: true });
      assert.equal(await tty.exited(), 0, tty.stdout());
      assert.match(tty.stdout(), /\/dev\/pts\/\d+/);

      // "ready" says the command runs on the terminal (the container starting is not enough).
      const sleeper = spawnFcvm(
        ['podman', 'run', '--name', 'ctrlc', '-t', ...SMALL, IMAGE, 'sh', '-c', 'echo ready; sleep 100'],
        t.env,
        { pty: true },
      );
      await sleeper.waitForOutput(/ready/);
      const sent = Date.now();
      sleeper.child.stdin.write('\x03');
      const status = await sleeper.exited(60_000);
      assert.ok(Date.now() - sent < 30_000, 'Ctrl-C ended the container well before sleep 100 would have');
      assert.equal(status, 130, 'the container died of SIGINT');
      assertNothingLeft();
    });

    test('a long-running container: ls shows it healthy, exec works in the container and in the VM, the clock is synced, SIGTERM cleans up', async () => {
      const web = spawnFcvm(['podman', 'run', '--name', 'web', ...SMALL, IMAGE, 'httpd', '-f', '-p', '8080'], t.env);
      try {
        const record = await waitHealthy('web', web);
        assert.equal(record?.status, 'running');
        assert.equal(record?.health_status, 'healthy');
        assert.equal(record?.pid, web.child.pid);

        const inContainer = fcvmSync(
          ['exec', '--name', 'web', '--', 'sh', '-c', 'ps; echo container-side; exit 3'],
          t.env,
        );
        assert.equal(inContainer.status, 3, inContainer.stderr);
        assert.match(inContainer.stdout, /httpd/);
        assert.match(inContainer.stdout, /container-side/);

        const inVm = fcvmSync(['exec', '--pid', String(web.child.pid), '--vm', '--', 'cat', '/etc/os-release'], t.env);
        assert.equal(inVm.status, 0, inVm.stderr);
        assert.match(inVm.stdout, /Debian/);

        const piped = fcvmSync(['exec', '--name', 'web', '-i', '--', 'wc', '-l'], t.env, 'a\nb\nc\n');
        assert.equal(piped.stdout.trim(), '3');

        // The guest read its clock somewhere between the exec's start and end (seconds apart on a busy host).
        const before = Date.now() / 1000;
        const clock = fcvmSync(['exec', '--name', 'web', '--vm', '--', 'date', '+%s.%N'], t.env);
        const after = Date.now() / 1000;
        assert.equal(clock.status, 0, clock.stderr);
        const guest = Number(clock.stdout.trim());
        const skew = guest < before ? before - guest : guest > after ? guest - after : 0;
        assert.ok(
          skew < 2,
          `guest clock within 2 s of the host's (${skew.toFixed(3)} s outside the exec's ${(after - before).toFixed(1)} s)`,
        );

        const missing = fcvmSync(['exec', '--name', 'nosuchvm', '--', 'true'], t.env);
        assert.equal(missing.status, 3);
        assert.match(missing.stderr, /No running VM is named nosuchvm/);
      } finally {
        web.child.kill('SIGTERM');
      }
      assert.equal(await web.exited(60_000), 143);
      assertNothingLeft();
    });

    test('SIGKILL to fcvm also ends the VMM, and the next fcvm command sweeps what was left', async () => {
      const run = spawnFcvm(['podman', 'run', '--name', 'doomed', ...SMALL, IMAGE, 'sleep', '300'], t.env);
      const vmId = (await waitHealthy('doomed', run)).vm_id as string;
      assert.ok(processesMatching(vmId).length > 0, 'the VMM runs');
      run.child.kill('SIGKILL');
      await run.exited();
      const gone = Date.now() + 10_000;
      while (processesMatching(vmId).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(processesMatching(vmId), [], 'the VMM died with fcvm');

      const ls = fcvmSync(['ls', '--json'], t.env);
      assert.equal(ls.status, 0);
      assert.deepEqual(JSON.parse(ls.stdout), []);
      assert.equal(existsSync(join(t.dataDir, 'vms', vmId)), false, 'the VM directory was swept');
      assertNothingLeft();
    });
  });
}
