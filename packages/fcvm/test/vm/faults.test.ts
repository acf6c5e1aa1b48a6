/**
 * Faults injected under real VMs (QEMU): each ends with one clear error sentence and its documented
 * exit status (docs/ERRORS.md), leaves nothing behind, and the next run works.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fcvmSync, processesMatching, type RunningFcvm, spawnFcvm, useVmTestEnv } from '../helpers/vm-env.js';
import { cutAcceptedUnixConnections } from '../support/cut-socket.js';

const IMAGE = 'localhost/fcvm-busybox';
const SMALL = ['--mem', '512', '--cpu', '2', '--hypervisor', 'qemu'];

describe('faults under a running VM', () => {
  const env = useVmTestEnv('fcvm-fault-');

  function assertNothingLeft(dataDir = env().dataDir): void {
    assert.deepEqual(readdirSync(join(dataDir, 'vms')), [], 'no VM directory left');
    assert.deepEqual(
      readdirSync(join(dataDir, 'state')).filter((f) => f.endsWith('.json')),
      [],
      'no registry record left',
    );
    assert.deepEqual(processesMatching(dataDir), [], 'no process of this test left');
  }

  /** One line on stderr that starts with "fcvm:" (info lines of the run before it are allowed). */
  function errorLine(run: { stderr(): string }): string {
    const lines = run
      .stderr()
      .trim()
      .split('\n')
      .filter((line) => line.startsWith('fcvm:'));
    assert.equal(lines.length, 1, `one error line expected, got:\n${run.stderr()}`);
    return lines[0] as string;
  }

  function assertNextRunWorks(extraEnv: NodeJS.ProcessEnv = {}): Promise<void> {
    const run = spawnFcvm(['podman', 'run', '--name', 'after', ...SMALL, IMAGE, 'echo', 'still fine'], {
      ...env().env,
      ...extraEnv,
    });
    return run.exited().then((status) => {
      assert.equal(status, 0, run.stderr());
      assert.equal(run.stdout(), 'still fine\n');
    });
  }

  async function startSleeper(name: string): Promise<RunningFcvm> {
    const run = spawnFcvm(
      ['podman', 'run', '--name', name, ...SMALL, IMAGE, 'sh', '-c', 'echo ready; sleep 600'],
      env().env,
    );
    await run.waitForOutput(/ready/, 240_000);
    return run;
  }

  function vmmPid(): number {
    const pids = processesMatching(env().dataDir).filter((pid) =>
      readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('qemu-system'),
    );
    assert.equal(pids.length, 1, `one VMM expected, found ${pids.join(', ')}`);
    return pids[0] as number;
  }

  test('the VMM SIGKILLed mid-run: exit 1 naming the VM and its console log', async () => {
    const run = await startSleeper('vmm-killed');
    process.kill(vmmPid(), 'SIGKILL');
    assert.equal(await run.exited(60_000), 1, run.stderr());
    assert.match(
      errorLine(run),
      /^fcvm: The VM stopped unexpectedly \(VMM exit (?:9|SIGKILL)\); see .*\/logs\/vmm-killed-vm-\w+\.log\.$/,
    );
    assertNothingLeft();
    await assertNextRunWorks();
    assertNothingLeft();
  });

  test('the VM frozen for 40 s (VMM stopped): fcvm notices the silent channel, reconnects and still gets the exit', async () => {
    const run = spawnFcvm(
      ['podman', 'run', '--name', 'frozen', ...SMALL, IMAGE, 'sh', '-c', 'echo ready; sleep 75; echo done; exit 4'],
      env().env,
    );
    await run.waitForOutput(/ready/, 240_000);
    const vmm = vmmPid();
    process.kill(vmm, 'SIGSTOP');
    try {
      await run.waitForOutput(/answered nothing on its channel/, 60_000);
    } finally {
      process.kill(vmm, 'SIGCONT');
    }
    assert.equal(await run.exited(240_000), 4, run.stderr());
    assert.equal(run.stdout(), 'ready\ndone\n');
    assert.match(run.stderr(), /Reconnecting to collect the container's exit/);
    assertNothingLeft();
  });

  test('the agent killed in the guest: exit 1 with one error, nothing left', async () => {
    const run = await startSleeper('agent-killed');
    // In the background so the exec's own session is not the one cut.
    const kill = fcvmSync(
      ['exec', '--name', 'agent-killed', '--vm', '--', 'sh', '-c', '(sleep 1; pkill -9 -f fc-agent) >/dev/null 2>&1 &'],
      env().env,
    );
    assert.equal(kill.status, 0, kill.stderr);
    assert.equal(await run.exited(240_000), 1, run.stderr());
    assert.match(errorLine(run), /^fcvm: (The VM stopped unexpectedly|fc-agent in the guest)/);
    assertNothingLeft();
  });

  test('QEMU missing from PATH: exit 1 naming the package, before anything starts', async () => {
    const bin = join(env().dataDir, 'bin-without-qemu');
    mkdirSync(bin);
    for (const dir of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
      for (const name of readdirSync(dir)) {
        if (name.startsWith('qemu-system')) continue;
        try {
          symlinkSync(join(dir, name), join(bin, name));
        } catch {
          // the first directory on PATH wins, as it would
        }
      }
    }
    const run = spawnFcvm(['podman', 'run', '--name', 'noqemu', ...SMALL, IMAGE, 'true'], { ...env().env, PATH: bin });
    const status = await run.exited(60_000);
    assert.match(errorLine(run), /qemu/i);
    assert.ok(status === 1 || status === 2, `exit 1 or 2, got ${status}: ${run.stderr()}`);
    rmSync(bin, { recursive: true, force: true });
    assertNothingLeft();
  });

  test('the channel socket cut under a running container: fcvm reconnects, the output goes on, the exit comes back', async () => {
    const run = spawnFcvm(
      ['podman', 'run', '--name', 'cut', ...SMALL, IMAGE, 'sh', '-c', 'echo first; sleep 10; echo second; exit 5'],
      env().env,
    );
    await run.waitForOutput(/first/, 240_000);
    assert.equal(cutAcceptedUnixConnections(vmmPid(), '/agent.sock'), 1, 'one agent channel connection cut');
    assert.equal(await run.exited(120_000), 5, run.stderr());
    assert.match(run.stdout(), /second/, 'output after the cut still reaches fcvm');
    assert.doesNotMatch(run.stderr(), /^fcvm:/m, 'no error: the session was recovered');
    assertNothingLeft();
  });

  test("the data dir's filesystem full during a run: the container sees the I/O error, fcvm says why, nothing left", async () => {
    // A small tmpfs as the data dir, with the shared assets linked in: the VM's disk overlay lives there.
    const dataDir = join(env().dataDir, 'small');
    mkdirSync(dataDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'fcvm-test-small', dataDir]);
    try {
      symlinkSync(join(env().dataDir, 'assets'), join(dataDir, 'assets'));
      const run = spawnFcvm(
        [
          'podman',
          'run',
          '--name',
          'disk-full',
          ...SMALL,
          IMAGE,
          'sh',
          '-c',
          'dd if=/dev/urandom of=/fill bs=1M count=96 conv=fsync 2>/dev/null; echo dd=$?',
        ],
        { ...env().env, FCVM_DATA_DIR: dataDir },
      );
      const status = await run.exited(300_000);
      assert.match(run.stdout(), /dd=[1-9]/, `the write failed in the guest: ${run.stderr()}`);
      assert.match(run.stderr(), /could not be written: no space is left on the filesystem of .*small/);
      // The status is the container's or podman's (the guest's filesystem may have turned read-only
      // under it), never an fcvm failure: no `fcvm:` error line.
      assert.equal(typeof status, 'number', run.stderr());
      assert.doesNotMatch(run.stderr(), /^fcvm:/m);
      assertNothingLeft(dataDir);
    } finally {
      execFileSync('umount', [dataDir]);
      rmSync(dataDir, { recursive: true, force: true });
    }
    await assertNextRunWorks();
  });

  test('a corrupted initrd asset: exit 1 naming the console log, nothing left, the intact assets still work', async () => {
    // A private assets dir: links to the shared cache, except a truncated copy of the initrd.
    const dataDir = join(env().dataDir, 'corrupt');
    const assets = join(dataDir, 'assets');
    mkdirSync(assets, { recursive: true });
    const shared = join(env().dataDir, 'assets');
    for (const name of readdirSync(shared)) {
      if (name.startsWith('initrd-')) {
        copyFileSync(join(shared, name), join(assets, name));
        const bytes = readFileSync(join(assets, name));
        writeFileSync(join(assets, name), bytes.subarray(0, Math.floor(bytes.length / 3)));
      } else {
        symlinkSync(join(shared, name), join(assets, name));
      }
    }
    const run = spawnFcvm(['podman', 'run', '--name', 'corrupt', ...SMALL, IMAGE, 'true'], {
      ...env().env,
      FCVM_DATA_DIR: dataDir,
    });
    assert.equal(await run.exited(240_000), 1, run.stderr());
    assert.match(errorLine(run), /console log/);
    assertNothingLeft(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    await assertNextRunWorks();
  });
});
