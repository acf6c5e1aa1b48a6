/**
 * Snapshots and clones end to end (QEMU, KVM or TCG): `fcvm snapshot create` of a running container
 * VM, `fcvm snapshot serve`, `fcvm snapshot run` clones, and the restore contract seen from outside
 * (clock, RNG, output, exec, identity). One baseline VM and one snapshot are shared by the whole file
 * (the seed's SnapshotFixture); every clone a test starts is ended and checked for leftovers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { SLICE_NAME, scopeName } from '../../src/cgroup/swap-scope.js';
import {
  DISCARD_PORT,
  FAKE_HOSTNAME,
  type FakeInternet,
  HTTP_BODY,
  startFakeInternet,
} from '../helpers/fake-internet.js';
import {
  fcvmSync,
  processesMatching,
  type RunningFcvm,
  spawnFcvm,
  testResult,
  type VmTestEnv,
  vmTestEnv,
} from '../helpers/vm-env.js';
import { memoryCgroupOf } from '../helpers/vm-fixture.js';

const IMAGE = 'localhost/fcvm-busybox';
const SMALL = ['--mem', '512', '--cpu', '2', '--hypervisor', 'qemu'];
/** Loopback addresses are allocated per data directory: other test files may publish 8080 on the same one. */
const HOST_PORT = 20_000 + Math.floor(Math.random() * 10_000);
/** busybox httpd daemonises (no -f): it serves the published port while the counter prints. */
const COUNTER =
  'mkdir -p /www && echo snap-web > /www/index.html && httpd -p 80 -h /www; i=0; while true; do echo COUNT $i; i=$((i+1)); sleep 1; done';

function lastCount(run: RunningFcvm): number {
  return Number([...run.stdout().matchAll(/COUNT (\d+)/g)].at(-1)?.[1] ?? -1);
}

interface Record_ {
  name: string;
  pid: number;
  vm_id: string;
  health_status: string;
  status: string;
  children: { pid: number; role: string }[];
  config: { process_type: string; snapshot_name: string | null; serve_pid: number | null };
}

describe('fcvm snapshot create / serve / run (qemu)', () => {
  let t: VmTestEnv;
  let inet: FakeInternet;
  let baseline: RunningFcvm;
  let snapshotCreatedAt: number;
  let countBeforeSnapshot: number;
  const running: RunningFcvm[] = [];

  function ls(): Record_[] {
    const out = fcvmSync(['ls', '--json'], t.env);
    assert.equal(out.status, 0, out.stderr);
    return JSON.parse(out.stdout) as Record_[];
  }

  async function waitHealthy(name: string, run: RunningFcvm): Promise<Record_> {
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const record = ls().find((r) => r.name === name);
      if (record?.health_status === 'healthy' && record.status === 'running') return record;
      if (run.child.exitCode !== null) assert.fail(`fcvm ${name} exited early: ${run.stderr()}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.fail(`${name} did not become healthy in 120 s`);
  }

  function startClone(name: string, extra: readonly string[] = []): RunningFcvm {
    const run = spawnFcvm(['snapshot', 'run', '--snapshot', 'base', '--name', name, ...extra], t.env);
    running.push(run);
    return run;
  }

  /** A foreground clone for the duration of `body`; it is stopped (SIGTERM, status 143) whatever happens. */
  async function withClone<T>(
    name: string,
    extra: readonly string[],
    body: (record: Record_, run: RunningFcvm) => Promise<T>,
  ): Promise<T> {
    const run = startClone(name, extra);
    try {
      return await body(await waitHealthy(name, run), run);
    } finally {
      if (run.child.exitCode === null) assert.equal(await stop(run), 143, run.stderr());
    }
  }

  async function stop(run: RunningFcvm): Promise<number> {
    run.child.kill('SIGTERM');
    return run.exited(60_000);
  }

  /** Only the baseline's VM dir and record remain, no clone process, nothing half-published. */
  function assertOnlyBaselineLeft(): void {
    const records = readdirSync(join(t.dataDir, 'state')).filter((f) => f.endsWith('.json'));
    assert.equal(records.length, 1, `only the baseline's record: ${records.join(', ')}`);
    assert.equal(readdirSync(join(t.dataDir, 'vms')).length, 1, 'only the baseline VM dir');
    const snapshots = readdirSync(join(t.dataDir, 'snapshots')).filter((f) => !f.startsWith('.'));
    assert.deepEqual(
      snapshots.filter((f) => /\.(creating|old)$/.test(f)),
      [],
      'nothing half-published',
    );
    const live = running.filter(
      (run) => run !== baseline && run.child.exitCode === null && run.child.signalCode === null,
    );
    assert.deepEqual(
      live.map((run) => run.child.spawnargs.slice(2).join(' ')),
      [],
      'no clone fcvm process left',
    );
    // A clone's VMM maps <data>/snapshots/<name>/memory.bin; the baseline's does not.
    assert.deepEqual(processesMatching(join(t.dataDir, 'snapshots')), [], 'no clone VMM left');
  }

  function execIn(name: string, command: string): { status: number; stdout: string; stderr: string } {
    return fcvmSync(['exec', '--name', name, '--', 'sh', '-c', command], t.env);
  }

  before(async () => {
    t = await vmTestEnv('fcvm-snap-');
    inet = await startFakeInternet();
    // The guest's resolver and clock sources: the test's own servers only.
    Object.assign(t.env, { FCVM_DNS: inet.address, FCVM_NTP: inet.address });
    baseline = spawnFcvm(
      ['podman', 'run', '--name', 'base', ...SMALL, '--publish', `${HOST_PORT}:80`, IMAGE, 'sh', '-c', COUNTER],
      t.env,
    );
    running.push(baseline);
    // A cold boot + podman load under TCG on a loaded 2-core machine has taken over 150 s.
    await baseline.waitForOutput(/COUNT 2\n/, 300_000);
    countBeforeSnapshot = lastCount(baseline);
    const created = fcvmSync(['snapshot', 'create', 'base'], t.env);
    assert.equal(created.status, 0, created.stderr);
    snapshotCreatedAt = Date.now();
  });

  // A failed test keeps fcvm's debug log and the console logs (test/helpers/vm-env.ts).
  afterEach((test) => t?.noteResult(testResult(test)));

  after(async () => {
    for (const run of running) if (run.child.exitCode === null) run.child.kill('SIGTERM');
    await Promise.all(running.map((run) => run.exited(30_000)));
    inet?.stop();
    t?.cleanup();
  });

  test('create publishes a complete snapshot (0700 dir, 0600 files) and the source keeps running', () => {
    const dir = join(t.dataDir, 'snapshots', 'base');
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const files = readdirSync(dir);
    for (const file of files) assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600, file);
    const metadata = JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8'));
    assert.equal(metadata.hypervisor, 'qemu');
    assert.equal(metadata.source_name, 'base');
    assert.equal(metadata.memory_mib, 512);
    assert.deepEqual(metadata.container.command, ['sh', '-c', COUNTER]);
    assert.equal(metadata.parent, null);
    for (const file of Object.values(metadata.files) as string[]) assert.ok(files.includes(file), file);
    assert.equal(execIn('base', 'echo source-alive').stdout, 'source-alive\n');
    const before = lastCount(baseline);
    return baseline.waitForOutput(new RegExp(`COUNT ${before + 1}\\n`), 30_000);
  });

  test('--exec runs one command in the clone, prints its output and exits with its status', async () => {
    const run = spawnFcvm(['snapshot', 'run', '--snapshot', 'base', '--exec', 'echo from-clone; exit 7'], t.env);
    running.push(run);
    assert.equal(await run.exited(), 7, run.stderr());
    assert.equal(run.stdout(), 'from-clone\n');
    assertOnlyBaselineLeft();
  });

  test('clock: a snapshot at least 10 s old restores with the wall clock within 1 s of the host', async () => {
    // The condition is the snapshot's age, not a synchronisation: wait until it holds.
    while (Date.now() - snapshotCreatedAt < 10_000) await new Promise((r) => setTimeout(r, 200));
    await withClone('clock', [], async (record) => {
      // The agent ran the whole restore sequence, each step timed, before the clone was served.
      const console_ = readFileSync(join(t.dataDir, 'vms', record.vm_id, 'console.log'), 'utf8');
      for (const step of ['clock', 'rng reseed', 'hostname']) {
        assert.match(console_, new RegExp(`fc-agent: restore step ${step}: \\d+ ms`), step);
      }
      assert.match(console_, /fc-agent: restore complete in \d+ ms/);
      const before = Date.now();
      // The guest OS's date (coreutils has %N; the container's busybox does not): the clock the agent set.
      const out = fcvmSync(['exec', '--name', 'clock', '--vm', '--', 'date', '+%s%N'], t.env);
      const afterMs = Date.now();
      assert.equal(out.status, 0, out.stderr);
      const guestMs = Number(BigInt(out.stdout.trim()) / 1_000_000n);
      assert.ok(guestMs >= before - 1000 && guestMs <= afterMs + 1000, `guest ${guestMs}, host ${before}..${afterMs}`);
      assert.equal(
        fcvmSync(['exec', '--name', 'clock', '--vm', '--', 'hostname'], t.env).stdout,
        'clock\n',
        "the clone's guest has its own name",
      );
    });
    assertOnlyBaselineLeft();
  });

  test('RNG: two clones of one snapshot read different /dev/urandom bytes and kernel uuids', async () => {
    const read = 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; cat /proc/sys/kernel/random/uuid';
    const runs = [0, 1].map(() => spawnFcvm(['snapshot', 'run', '--snapshot', 'base', '--exec', read], t.env));
    running.push(...runs);
    const statuses = await Promise.all(runs.map((run) => run.exited()));
    assert.deepEqual(statuses, [0, 0], runs.map((run) => run.stderr()).join('\n'));
    const [a, b] = runs.map((run) => run.stdout().trim().split('\n'));
    assert.equal(a?.length, 2);
    assert.notEqual(a?.[0], b?.[0], 'urandom bytes differ');
    assert.notEqual(a?.[1], b?.[1], 'uuids differ');
    assertOnlyBaselineLeft();
  });

  test("output: the container's counter keeps printing in the clone's terminal", async () => {
    await withClone('output', [], async (_record, clone) => {
      await clone.waitForOutput(/COUNT \d+\n(.|\n)*COUNT \d+\n(.|\n)*COUNT \d+\n/, 120_000);
      const counts = [...clone.stdout().matchAll(/COUNT (\d+)/g)].map((m) => Number(m[1]));
      // The clone goes on from the snapshot: its first line follows what the baseline printed before it.
      assert.ok(
        counts.length >= 3 && (counts[0] ?? -1) >= countBeforeSnapshot,
        `${countBeforeSnapshot}: ${clone.stdout()}`,
      );
      for (let i = 1; i < counts.length; i++) assert.equal(counts[i], (counts[i - 1] ?? 0) + 1, 'consecutive');
      assert.match(clone.stderr(), /restoring snapshot with track_dirty_pages=true/);
    });
    assertOnlyBaselineLeft();
  });

  for (const count of [2, 5]) {
    test(`${count} clones of one snapshot at once: all healthy, all answer exec, all cleaned up`, async () => {
      const clones = Array.from({ length: count }, (_, i) => ({
        name: `many${count}-${i}`,
        run: startClone(`many${count}-${i}`),
      }));
      for (const { name, run } of clones) await waitHealthy(name, run);
      for (const { name } of clones) assert.equal(execIn(name, 'echo $0-ok').stdout, 'sh-ok\n', name);
      const statuses = await Promise.all(clones.map(({ run }) => stop(run)));
      assert.deepEqual(statuses, Array(count).fill(143));
      assertOnlyBaselineLeft();
    });
  }

  test('a snapshot of a clone, and a clone of that snapshot', async () => {
    await withClone('middle', [], async () => {
      const created = fcvmSync(['snapshot', 'create', 'middle', '--tag', 'second'], t.env);
      assert.equal(created.status, 0, created.stderr);
      assert.equal(execIn('middle', 'echo middle-alive').stdout, 'middle-alive\n');
    });
    const metadata = JSON.parse(readFileSync(join(t.dataDir, 'snapshots', 'second', 'snapshot.json'), 'utf8'));
    assert.equal(metadata.parent, 'base');
    const grandchild = spawnFcvm(['snapshot', 'run', '--snapshot', 'second', '--exec', 'echo grandchild'], t.env);
    running.push(grandchild);
    assert.equal(await grandchild.exited(), 0, grandchild.stderr());
    assert.equal(grandchild.stdout(), 'grandchild\n');
    assertOnlyBaselineLeft();
  });

  test('network: the clone keeps the guest address behind its own loopback address and answers on the published port', async () => {
    await withClone('web', [], async (record) => {
      const cloneConfig = record.config as unknown as {
        network: { loopback_ip: string | null; guest_ip: string | null };
      };
      const baseConfig = ls().find((r) => r.name === 'base')?.config as unknown as typeof cloneConfig;
      assert.equal(cloneConfig.network.guest_ip, baseConfig.network.guest_ip, 'same guest address');
      const address = cloneConfig.network.loopback_ip;
      assert.ok(address !== null && address !== baseConfig.network.loopback_ip, `own loopback address ${address}`);
      // Client retries are allowed (the guest's httpd is already running; no fixed sleep).
      const deadline = Date.now() + 30_000;
      let body = '';
      while (Date.now() < deadline) {
        body = await fetch(`http://${address}:${HOST_PORT}/`, { signal: AbortSignal.timeout(3_000) })
          .then((response) => response.text())
          .catch(() => '');
        if (body !== '') break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(body, 'snap-web\n');
      const console_ = readFileSync(join(t.dataDir, 'vms', record.vm_id, 'console.log'), 'utf8');
      assert.match(console_, /fc-agent: restore step stale connections: \d+ ms/);
      assert.match(console_, /fc-agent: restore step neighbour announcement started/);
    });
    assertOnlyBaselineLeft();
  });

  test('stale TCP: a connection to the outside made before the snapshot is reset in the clone, one to the gateway survives, a new one works', async () => {
    // The gateway side: a service on the host's loopback, which the guest reaches at 10.0.2.2.
    const held: Socket[] = [];
    const gateway = createServer((socket) => {
      socket.on('error', () => undefined);
      held.push(socket);
    });
    await new Promise<void>((resolve) => gateway.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const gatewayPort = (gateway.address() as AddressInfo).port;
    const outside = `${inet.address}:${DISCARD_PORT}`;
    const toGateway = `10.0.2.2:${gatewayPort}`;
    const established = (name: string): string => {
      const result = fcvmSync(['exec', '--name', name, '--vm', '--', 'ss', '-Htn', 'state', 'established'], t.env);
      assert.equal(result.status, 0, result.stderr);
      return result.stdout;
    };
    try {
      const opened = execIn(
        'base',
        `(sleep 100000 | nc ${inet.address} ${DISCARD_PORT} >/dev/null 2>&1 &); (sleep 100000 | nc 10.0.2.2 ${gatewayPort} >/dev/null 2>&1 &)`,
      );
      assert.equal(opened.status, 0, opened.stderr);
      const deadline = Date.now() + 30_000;
      let before = '';
      while (Date.now() < deadline) {
        before = established('base');
        if (before.includes(outside) && before.includes(toGateway)) break;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      assert.ok(before.includes(outside) && before.includes(toGateway), `both connections in the source:\n${before}`);
      const created = fcvmSync(['snapshot', 'create', 'base', '--tag', 'tcp'], t.env);
      assert.equal(created.status, 0, created.stderr);
      const run = spawnFcvm(['snapshot', 'run', '--snapshot', 'tcp', '--name', 'tcp1'], t.env);
      running.push(run);
      try {
        await waitHealthy('tcp1', run);
        const after_ = established('tcp1');
        assert.ok(!after_.includes(outside), `the connection to ${outside} is reset in the clone:\n${after_}`);
        assert.ok(after_.includes(toGateway), `the connection to the gateway survives:\n${after_}`);
        const fresh = execIn('tcp1', `wget -qO- http://${FAKE_HOSTNAME}/`);
        assert.equal(fresh.stdout, HTTP_BODY, fresh.stderr);
        assert.ok(established('base').includes(outside), 'the source keeps its connection');
      } finally {
        if (run.child.exitCode === null) assert.equal(await stop(run), 143, run.stderr());
      }
    } finally {
      execIn('base', 'pkill nc');
      for (const socket of held) socket.destroy();
      gateway.close();
      fcvmSync(['snapshots', 'delete', 'tcp'], t.env);
    }
    assertOnlyBaselineLeft();
  });

  test('serve + run --pid: the clone belongs to the server and QEMU maps the file itself', async () => {
    const serve = spawnFcvm(['snapshot', 'serve', 'base'], t.env);
    running.push(serve);
    await serve.waitForOutput(/^\d+\n/, 30_000);
    const servePid = serve.child.pid as number;
    const run = spawnFcvm(['snapshot', 'run', '--pid', String(servePid), '--name', 'served'], t.env);
    running.push(run);
    try {
      const record = await waitHealthy('served', run);
      assert.equal(record.config.process_type, 'clone');
      assert.equal(record.config.serve_pid, servePid);
      assert.equal(record.config.snapshot_name, 'base');
      assert.match(run.stderr(), /maps the snapshot's memory file itself/);
    } finally {
      assert.equal(await stop(run), 143);
      assert.equal(await stop(serve), 0);
    }
    assertOnlyBaselineLeft();
  });

  test('--no-dirty-tracking logs track_dirty_pages=false', async () => {
    const run = spawnFcvm(['snapshot', 'run', '--snapshot', 'base', '--no-dirty-tracking', '--exec', 'true'], t.env);
    running.push(run);
    assert.equal(await run.exited(), 0, run.stderr());
    assert.match(run.stderr(), /track_dirty_pages=false/);
    assertOnlyBaselineLeft();
  });

  test("--no-swap puts the clone's VMM in its own scope and removes the scope at the end", async () => {
    const vmmPid = await withClone('noswap', ['--no-swap'], async (record) => {
      const vmm = record.children.find((c) => c.role === 'qemu');
      assert.ok(vmm, JSON.stringify(record.children));
      assert.equal(await memoryCgroupOf(vmm.pid), `/${SLICE_NAME}/${scopeName(vmm.pid)}`);
      return vmm.pid;
    });
    const scopes = execFileSync('find', ['/sys/fs/cgroup', '-maxdepth', '3', '-name', scopeName(vmmPid)], {
      encoding: 'utf8',
    });
    assert.equal(scopes.trim(), '', 'scope removed');
    assertOnlyBaselineLeft();
  });

  test('bad input: one clear error each, nothing left, the source untouched', () => {
    const cases: { args: string[]; status: number; message: RegExp }[] = [
      { args: ['snapshot', 'run', '--snapshot', 'nope'], status: 3, message: /no snapshot named nope/ },
      { args: ['snapshot', 'run', '--pid', '999999'], status: 3, message: /No memory server runs as pid 999999/ },
      {
        args: ['snapshot', 'run', '--pid', String(baseline.child.pid)],
        status: 2,
        message: /is a VM, not a memory server/,
      },
      { args: ['snapshot', 'create', 'nope'], status: 3, message: /No running VM is named nope/ },
    ];
    for (const { args, status, message } of cases) {
      const out = fcvmSync(args, t.env);
      assert.equal(out.status, status, `${args.join(' ')}: ${out.stderr}`);
      assert.match(out.stderr, message);
      assert.equal(
        out.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('fcvm:')).length,
        1,
      );
    }
    const snapshots = join(t.dataDir, 'snapshots');
    cpSync(join(snapshots, 'base'), join(snapshots, 'corrupt'), { recursive: true });
    writeFileSync(join(snapshots, 'corrupt', 'snapshot.json'), '{"name": "corr');
    const corrupt = fcvmSync(['snapshot', 'run', '--snapshot', 'corrupt', '--exec', 'true'], t.env);
    assert.equal(corrupt.status, 1, corrupt.stderr);
    assert.match(corrupt.stderr, /Snapshot corrupt has no readable metadata/);
    cpSync(join(snapshots, 'base'), join(snapshots, 'short'), { recursive: true });
    truncateSync(join(snapshots, 'short', 'memory.bin'), 1024 * 1024);
    const short = fcvmSync(['snapshot', 'run', '--snapshot', 'short', '--exec', 'true'], t.env);
    assert.equal(short.status, 1, short.stderr);
    assert.match(short.stderr, /Snapshot short is damaged \(its memory file holds 1048576 bytes/);
    for (const name of ['corrupt', 'short']) rmSync(join(snapshots, name), { recursive: true });
    assertOnlyBaselineLeft();
    assert.equal(execIn('base', 'echo untouched').stdout, 'untouched\n');
  });

  test('disk full while creating: one clear error, nothing published, the source keeps running', async () => {
    const snapshots = join(t.dataDir, 'snapshots');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=0700', 'fcvm-test-full', snapshots]);
    try {
      const out = fcvmSync(['snapshot', 'create', 'base', '--tag', 'full'], t.env);
      assert.equal(out.status, 1, out.stderr);
      assert.match(out.stderr, /Not enough space for snapshot full/);
      assert.deepEqual(
        readdirSync(snapshots).filter((f) => !f.startsWith('.')),
        [],
        'nothing published or left half-written',
      );
    } finally {
      execFileSync('umount', [snapshots]);
    }
    assert.ok(existsSync(join(snapshots, 'base', 'snapshot.json')), 'the older snapshot is untouched');
    assert.equal(execIn('base', 'echo after-full').stdout, 'after-full\n');
    const before = lastCount(baseline);
    await baseline.waitForOutput(new RegExp(`COUNT ${before + 1}\\n`), 30_000);
  });
});
