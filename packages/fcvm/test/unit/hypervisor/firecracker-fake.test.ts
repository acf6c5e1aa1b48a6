/**
 * The Firecracker adapter driven against test/helpers/fake-firecracker.ts, which enforces
 * Firecracker's phase rules and strict parsing: boot, pause, snapshot, resume, restore, the agent
 * channel, and the error paths (wrong phase, failed load, API errors, process death, stop).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGENT_VSOCK_PORT } from '@fcvm/protocol';
import { findMemoryHierarchy } from '../../../src/cgroup/memory-hierarchy.js';
import { SLICE_NAME, scopeName } from '../../../src/cgroup/swap-scope.js';
import { dataDir as makeDataDir } from '../../../src/data-dir.js';
import { isFcvmError } from '../../../src/errors.js';
import { ENDPOINTS, FirecrackerApiError } from '../../../src/hypervisor/firecracker/api-client.js';
import { exchange } from '../../../src/hypervisor/firecracker/api-transport.js';
import { FirecrackerHypervisor } from '../../../src/hypervisor/firecracker/hypervisor.js';
import { createFirecracker, probeFirecracker } from '../../../src/hypervisor/firecracker/index.js';
import { startFirecrackerProcess } from '../../../src/hypervisor/firecracker/process.js';
import { parseVersion } from '../../../src/hypervisor/firecracker/version.js';
import type { FirecrackerVm } from '../../../src/hypervisor/firecracker/vm-handle.js';
import { connectHybridVsock, VsockConnectError } from '../../../src/hypervisor/firecracker/vsock.js';
import type { RestoreSpec, VmHandle, VmSpec } from '../../../src/hypervisor/types.js';
import { checkKvm } from '../../../src/sys/kvm.js';
import { isSameProcessAlive } from '../../../src/util/proc.js';
import { bundleFakeFirecracker, type FakeKnobs, fakeFirecrackerBinary } from '../../helpers/fake-firecracker-binary.js';
import { loadSpecValidators, specSkipReason } from '../../helpers/firecracker-spec.js';

let root: string;
let bundle: string;
let counter = 0;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'fcvm-fc-fake-'));
  bundle = await bundleFakeFirecracker(root);
});
after(() => rmSync(root, { recursive: true, force: true }));

interface Scenario {
  dir: string;
  binary: string;
  requestLog: string;
  hypervisor: FirecrackerHypervisor;
  spec: VmSpec;
  requests(): Array<{ method: string; path: string; body: Record<string, unknown> | null; status: number }>;
}

/** A fresh directory, fake binary (with these knobs) and VM spec under the test root. */
function scenario(knobs: FakeKnobs = {}): Scenario {
  const dir = join(root, `s${++counter}`);
  mkdirSync(join(dir, 'vm'), { recursive: true });
  const requestLog = join(dir, 'requests.jsonl');
  const binary = fakeFirecrackerBinary(dir, bundle, { FAKE_FC_REQUEST_LOG: requestLog, ...knobs });
  writeFileSync(join(dir, 'vmlinux'), 'kernel');
  writeFileSync(join(dir, 'rootfs.raw'), 'disk');
  const version = parseVersion(knobs.FAKE_FC_VERSION ?? '1.16.1')!;
  const hypervisor = new FirecrackerHypervisor({ binary, version, socketWaitMs: 15_000 });
  const spec: VmSpec = {
    vmId: `vm${counter}`,
    vmDir: join(dir, 'vm'),
    kernelPath: join(dir, 'vmlinux'),
    initrdPath: null,
    bootArgs: 'root=/dev/vda rw',
    vcpus: 2,
    memoryMib: 256,
    hugepages: false,
    trackDirtyPages: true,
    disks: [{ id: 'rootfs', path: join(dir, 'rootfs.raw'), readOnly: false, format: 'raw' }],
    net: { tapDevice: 'tap-fcvm1', guestMac: '02:fc:00:00:00:01' },
    memoryFilePath: null,
    netnsPath: null,
    metadata: { latest: { 'host-time': '1' } },
    consoleLogPath: join(dir, 'vm', 'console.log'),
    noSwap: false,
  };
  const requests = () =>
    existsSync(requestLog)
      ? readFileSync(requestLog, 'utf8')
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line))
      : [];
  return { dir, binary, requestLog, hypervisor, spec, requests };
}

/** Stops the handle after the test, whatever happened. */
function track<T extends VmHandle>(t: { after(fn: () => Promise<void> | void): void }, vm: T): T {
  t.after(async () => {
    await vm.stop({ graceMs: 0 });
  });
  return vm;
}

async function readLine(socket: Socket): Promise<string> {
  let text = '';
  while (!text.includes('\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    text += chunk.toString();
  }
  return text;
}

async function assertGone(pid: number): Promise<void> {
  for (let i = 0; i < 100 && isSameProcessAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(isSameProcessAlive(pid), false, `process ${pid} still alive`);
}

describe('Firecracker adapter against the fake Firecracker', () => {
  test('boot: configures in order, starts, and the agent channel connects over hybrid vsock', async (t) => {
    const s = scenario({ FAKE_FC_GUEST_GREETING: 'hello-from-guest\n' });
    const vm = track(t, (await s.hypervisor.boot(s.spec)) as FirecrackerVm);
    assert.equal(vm.kind, 'firecracker');
    assert.equal(vm.capabilities.channel, 'vsock');
    assert.deepEqual(
      s.requests().map((r) => `${r.method} ${r.path} ${r.status}`),
      [
        'GET / 200',
        'PUT /logger 204',
        'PUT /machine-config 204',
        'PUT /boot-source 204',
        'PUT /drives/rootfs 204',
        'PUT /network-interfaces/eth0 204',
        'PUT /mmds/config 204',
        'PUT /vsock 204',
        'PUT /mmds 204',
        'PUT /entropy 204',
        'PUT /actions 204',
      ],
    );
    const bodies = Object.fromEntries(s.requests().map((r) => [`${r.method} ${r.path}`, r.body]));
    assert.deepEqual(bodies['PUT /machine-config'], {
      vcpu_count: 2,
      mem_size_mib: 256,
      smt: false,
      track_dirty_pages: true,
    });
    assert.match(
      String(bodies['PUT /boot-source']?.boot_args),
      /^console=ttyS0 reboot=k panic=1 pci=off .* root=\/dev\/vda rw$/,
    );
    assert.deepEqual(bodies['PUT /mmds/config'], {
      version: 'V2',
      network_interfaces: ['eth0'],
      ipv4_address: '169.254.169.254',
    });
    assert.deepEqual(bodies['PUT /vsock'], { guest_cid: 3, uds_path: join(s.spec.vmDir, 'vsock.sock') });
    assert.deepEqual((await vm.api.describeInstance()).state, 'Running');
    assert.match(readFileSync(s.spec.consoleLogPath, 'utf8'), /guest vm\d+ booted with 2 vCPUs and 256 MiB/);

    const channel = await vm.openChannel();
    t.after(() => channel.destroy());
    // The guest's first bytes arrived in the same chunk as `OK <port>\n` and must not be lost.
    assert.equal(await readLine(channel), 'hello-from-guest\n');
    channel.write('ping\n');
    assert.equal(await readLine(channel), 'ping\n');
  });

  test('agent channel: a port nobody listens on is "no listener", and openChannel honours its abort signal', async (t) => {
    const s = scenario({ FAKE_FC_GUEST_PORTS: '' });
    const vm = track(t, (await s.hypervisor.boot(s.spec)) as FirecrackerVm);
    await assert.rejects(
      connectHybridVsock(vm.vsockPath, AGENT_VSOCK_PORT, { timeoutMs: 2000 }),
      (err) => err instanceof VsockConnectError && err.failure === 'no-listener',
    );
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const started = Date.now();
    await assert.rejects(vm.openChannel(controller.signal), /cancelled/);
    assert.ok(Date.now() - started < 3000, 'stopped retrying when aborted');
  });

  test('pause, snapshot, resume, stop: files written, Ctrl-Alt-Del ends the VM, no socket or process left', async (t) => {
    const s = scenario();
    const vm = track(t, await s.hypervisor.boot(s.spec));
    await assert.rejects(vm.snapshot({ dir: s.dir, kind: 'full' }), /must be paused before a snapshot/);
    await vm.pause();
    const snapDir = join(s.dir, 'snap');
    mkdirSync(snapDir);
    const files = await vm.snapshot({ dir: snapDir, kind: 'full' });
    assert.deepEqual(files, {
      memoryPath: join(snapDir, 'memory.bin'),
      vmstatePath: join(snapDir, 'vmstate.bin'),
      kind: 'full',
    });
    assert.equal(readFileSync(files.memoryPath).length, 256 * 1024 * 1024);
    const diff = await vm.snapshot({ dir: snapDir, kind: 'diff' });
    assert.equal(diff.kind, 'diff');
    assert.deepEqual(
      s
        .requests()
        .filter((r) => r.path === '/snapshot/create')
        .map((r) => r.body?.snapshot_type),
      ['Full', 'Diff'],
    );
    await vm.resume();
    const exit = await vm.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, 'the guest rebooted on Ctrl-Alt-Del and Firecracker exited');
    assert.deepEqual(await vm.exited, exit);
    assert.deepEqual(await vm.stop(), exit, 'stop is idempotent');
    assert.equal(existsSync(join(s.spec.vmDir, 'firecracker.sock')), false);
    assert.equal(existsSync(join(s.spec.vmDir, 'vsock.sock')), false);
    await assertGone(vm.pid);
    assert.ok(s.requests().some((r) => r.path === '/actions' && r.body?.action_type === 'SendCtrlAltDel'));
  });

  test('stop kills after the grace period when the guest ignores Ctrl-Alt-Del, and kills a paused VM at once', async (t) => {
    const s = scenario({ FAKE_FC_IGNORE_CTRL_ALT_DEL: '1' });
    const vm = track(t, await s.hypervisor.boot(s.spec));
    const started = Date.now();
    assert.deepEqual(await vm.stop({ graceMs: 300 }), { code: null, signal: 'SIGKILL' });
    assert.ok(Date.now() - started >= 250, 'waited for the grace period');
    await assertGone(vm.pid);

    const s2 = scenario();
    const paused = track(t, await s2.hypervisor.boot(s2.spec));
    await paused.pause();
    assert.deepEqual(await paused.stop(), { code: null, signal: 'SIGKILL' });
    assert.equal(s2.requests().filter((r) => r.body?.action_type === 'SendCtrlAltDel').length, 0);
  });

  test('restore from a File snapshot with TAP and vsock overrides, metadata put again, channel works', async (t) => {
    const s = scenario();
    const source = track(t, await s.hypervisor.boot(s.spec));
    await source.pause();
    const snapDir = join(s.dir, 'snap');
    mkdirSync(snapDir);
    const files = await source.snapshot({ dir: snapDir, kind: 'full' });
    await source.stop();

    const cloneDir = join(s.dir, 'clone');
    mkdirSync(cloneDir);
    const cloneDisk = join(cloneDir, 'rootfs.raw');
    writeFileSync(cloneDisk, 'clone disk');
    const restoreSpec: RestoreSpec = {
      ...s.spec,
      vmId: 'clone1',
      vmDir: cloneDir,
      consoleLogPath: join(cloneDir, 'console.log'),
      net: { tapDevice: 'tap-clone1', guestMac: '02:fc:00:00:00:01' },
      disks: [{ id: 'rootfs', path: cloneDisk, readOnly: false, format: 'raw' }],
      metadata: { latest: { 'restore-epoch': '7' } },
      vmstatePath: files.vmstatePath,
      memory: { backend: 'file', path: files.memoryPath },
      trackDirtyPages: false,
      resume: false,
    };
    const clone = track(t, (await s.hypervisor.restore(restoreSpec)) as FirecrackerVm);
    const load = s.requests().find((r) => r.path === '/snapshot/load');
    assert.deepEqual(load?.body, {
      snapshot_path: files.vmstatePath,
      mem_backend: { backend_type: 'File', backend_path: files.memoryPath },
      track_dirty_pages: false,
      resume_vm: false,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap-clone1' }],
      vsock_override: { uds_path: join(cloneDir, 'vsock.sock') },
    });
    const afterLoad = s.requests().slice(s.requests().findIndex((r) => r.path === '/snapshot/load'));
    assert.deepEqual(
      afterLoad.map((r) => `${r.method} ${r.path} ${JSON.stringify(r.body)}`),
      [
        `PUT /snapshot/load ${JSON.stringify(load?.body)}`,
        `PATCH /drives/rootfs ${JSON.stringify({ drive_id: 'rootfs', path_on_host: cloneDisk })}`,
        `PUT /mmds ${JSON.stringify({ latest: { 'restore-epoch': '7' } })}`,
      ],
    );
    assert.equal((await clone.api.describeInstance()).state, 'Paused');
    assert.deepEqual(await clone.api.getMmds(), { latest: { 'restore-epoch': '7' } });
    await clone.resume();
    const channel = await clone.openChannel();
    t.after(() => channel.destroy());
    channel.write('after-restore\n');
    assert.equal(await readLine(channel), 'after-restore\n');
    await clone.setMetadata({ latest: { 'restore-epoch': '8' } });
    assert.deepEqual(await clone.api.getMmds(), { latest: { 'restore-epoch': '8' } });
  });

  test('restore through a UFFD memory server socket', async (t) => {
    const s = scenario();
    const source = track(t, await s.hypervisor.boot(s.spec));
    await source.pause();
    const snapDir = join(s.dir, 'snap');
    mkdirSync(snapDir);
    const files = await source.snapshot({ dir: snapDir, kind: 'full' });
    await source.stop();

    const handshakes: string[] = [];
    const uffdSocket = join(s.dir, 'uffd.sock');
    const server = createServer((conn) => conn.on('data', (d) => handshakes.push(d.toString())));
    server.listen(uffdSocket);
    await once(server, 'listening');
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const cloneDir = join(s.dir, 'clone');
    mkdirSync(cloneDir);
    const clone = track(
      t,
      (await s.hypervisor.restore({
        ...s.spec,
        vmId: 'uffd1',
        vmDir: cloneDir,
        consoleLogPath: join(cloneDir, 'console.log'),
        vmstatePath: files.vmstatePath,
        memory: { backend: 'uffd', socketPath: uffdSocket },
        trackDirtyPages: true,
        resume: true,
      })) as FirecrackerVm,
    );
    assert.deepEqual(s.requests().find((r) => r.path === '/snapshot/load')?.body?.mem_backend, {
      backend_type: 'Uffd',
      backend_path: uffdSocket,
    });
    // With disks to re-point, the guest is resumed only after the drives were patched.
    const tail = s
      .requests()
      .slice(-4)
      .map((r) => `${r.method} ${r.path} ${r.status}`);
    assert.deepEqual(tail, ['PUT /snapshot/load 204', 'PATCH /drives/rootfs 204', 'PUT /mmds 204', 'PATCH /vm 204']);
    assert.equal(s.requests().find((r) => r.path === '/snapshot/load')?.body?.resume_vm, false);
    assert.equal((await clone.api.describeInstance()).state, 'Running');
    for (let i = 0; i < 50 && handshakes.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(handshakes.join(''), /"page_size":4096/);
    await clone.stop({ graceMs: 0 });
  });

  test('a failed load ends the process and reports the fault clearly', async () => {
    const s = scenario();
    const broken = join(s.dir, 'vmstate.bin');
    writeFileSync(broken, 'not a snapshot');
    writeFileSync(join(s.dir, 'memory.bin'), '');
    const restoreSpec: RestoreSpec = {
      ...s.spec,
      vmstatePath: broken,
      memory: { backend: 'file', path: join(s.dir, 'memory.bin') },
      trackDirtyPages: true,
      resume: true,
    };
    await assert.rejects(s.hypervisor.restore(restoreSpec), (err) => {
      assert.ok(isFcvmError(err) && err.code === 'HYPERVISOR');
      assert.deepEqual(err.context.exit, { code: 1, signal: null }, 'Firecracker ended itself after the failed load');
      assert.match(
        err.message,
        /^Firecracker could not restore VM vm\d+ from .*vmstate\.bin: Load snapshot error: .*; its output is in .*console\.log\.$/,
      );
      return true;
    });
    const load = s.requests().find((r) => r.path === '/snapshot/load');
    assert.equal(load?.status, 400);
    const log = readFileSync(s.spec.consoleLogPath, 'utf8');
    assert.match(log, /snapshot load failed, exiting/);
    await assertGone(Number(/ pid (\d+) listening/.exec(log)?.[1]));
    assert.equal(existsSync(join(s.spec.vmDir, 'firecracker.sock')), false);
  });

  test('a hugepage VM boots with huge_pages 2M and never with dirty tracking', async (t) => {
    const s = scenario();
    track(t, await s.hypervisor.boot({ ...s.spec, hugepages: true, trackDirtyPages: true }));
    assert.deepEqual(s.requests().find((r) => r.path === '/machine-config')?.body, {
      vcpu_count: 2,
      mem_size_mib: 256,
      smt: false,
      track_dirty_pages: false,
      huge_pages: '2M',
    });
  });

  test('refusals before spawning: hugepage snapshot with File memory, missing state file, qcow2 disk', async () => {
    const s = scenario();
    const base = { ...s.spec, vmstatePath: join(s.dir, 'nope'), trackDirtyPages: false, resume: false };
    await assert.rejects(
      s.hypervisor.restore({ ...base, hugepages: true, memory: { backend: 'file', path: '/m' } }),
      /only be restored through a UFFD memory server/,
    );
    await assert.rejects(s.hypervisor.restore({ ...base, memory: { backend: 'file', path: '/m' } }), /does not exist/);
    await assert.rejects(
      s.hypervisor.boot({ ...s.spec, disks: [{ id: 'rootfs', path: '/x', readOnly: false, format: 'qcow2' }] }),
      /raw disk images only/,
    );
    await assert.rejects(s.hypervisor.boot({ ...s.spec, hugepages: true, memoryMib: 255 }), /even number of MiB/);
    await assert.rejects(
      s.hypervisor.boot({ ...s.spec, vmDir: join(s.dir, 'x'.repeat(100)) }),
      /too long for a Unix socket .* use a shorter data directory/,
    );
    assert.deepEqual(s.requests(), [], 'no Firecracker was started');
  });

  test('phase rules: pre-boot calls after start and load on a configured process are refused with the fault message', async (t) => {
    const s = scenario();
    const vm = track(t, (await s.hypervisor.boot(s.spec)) as FirecrackerVm);
    await assert.rejects(vm.api.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 }), (err) => {
      assert.ok(err instanceof FirecrackerApiError);
      assert.equal(err.status, 400);
      assert.equal(
        err.message,
        'Firecracker rejected PUT /machine-config: The requested operation is not supported after starting the microVM.',
      );
      return true;
    });
    await assert.rejects(
      vm.api.createSnapshot({
        snapshot_path: join(s.dir, 'a'),
        mem_file_path: join(s.dir, 'b'),
        snapshot_type: 'Full',
      }),
      /Firecracker rejected PUT \/snapshot\/create: .*must be paused/,
    );

    // A second process: configure something boot-related, then try to load.
    const dir2 = join(s.dir, 'second');
    mkdirSync(dir2);
    const { vmm, client } = await startFirecrackerProcess(
      { binary: s.binary, vmId: 'second', vmDir: dir2, consoleLogPath: join(dir2, 'console.log'), netnsPath: null },
      s.hypervisor.version,
    );
    t.after(() => vmm.killAndWait().then(() => undefined));
    await assert.rejects(client.setVmState('Paused'), /not supported before starting the microVM/);
    await client.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 });
    await assert.rejects(
      client.loadSnapshot({
        snapshot_path: join(s.dir, 'x'),
        mem_backend: { backend_type: 'File', backend_path: join(s.dir, 'y') },
        resume_vm: false,
      }),
      /Loading a microVM snapshot not allowed after configuring boot-specific resources/,
    );
    assert.equal(vmm.running, true, 'a refused load (wrong phase) is not a failed load');
  });

  test('unknown fields and chunked bodies are rejected by the strict parser', async (t) => {
    const s = scenario();
    const vm = track(t, (await s.hypervisor.boot(s.spec)) as FirecrackerVm);
    const socketPath = vm.api.socketPath;
    const bogus = await exchange(socketPath, {
      method: 'PATCH',
      path: '/vm',
      body: '{"state":"Paused","bogus":1}',
      timeoutMs: 5000,
    });
    assert.equal(bogus.status, 400);
    assert.match(bogus.body, /unknown field `bogus`/);
    // micro_http reads a chunked body as empty: the client must never send one.
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { socketPath, method: 'PATCH', path: '/vm', headers: { 'Content-Type': 'application/json' } },
        (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write('{"state":');
      req.end('"Paused"}');
    });
    assert.equal(chunked.status, 400);
    assert.match(chunked.body, /Empty PATCH request/);
    const unknownPath = await exchange(socketPath, { method: 'GET', path: '/nope', timeoutMs: 5000 });
    assert.match(unknownPath.body, /Invalid request method and\/or path: GET \/nope/);
  });

  test('older versions get only the fields they know', async (t) => {
    for (const version of ['1.10.0', '1.12.0']) {
      const s = scenario({ FAKE_FC_VERSION: version });
      const source = track(t, await s.hypervisor.boot(s.spec));
      await source.pause();
      const snapDir = join(s.dir, 'snap');
      mkdirSync(snapDir);
      const files = await source.snapshot({ dir: snapDir, kind: 'full' });
      await source.stop();
      // Without vsock_override the snapshot's own vsock path is used again: same VM dir here.
      const clone = track(
        t,
        await s.hypervisor.restore({
          ...s.spec,
          net: { tapDevice: 'tap-clone1', guestMac: '02:fc:00:00:00:01' },
          vmstatePath: files.vmstatePath,
          memory: { backend: 'file', path: files.memoryPath },
          trackDirtyPages: true,
          resume: true,
        }),
      );
      const load = s.requests().find((r) => r.path === '/snapshot/load')?.body ?? {};
      assert.equal(load.enable_diff_snapshots, true, version);
      assert.equal('track_dirty_pages' in load, false, version);
      assert.equal('vsock_override' in load, false, version);
      assert.equal('network_overrides' in load, version === '1.12.0', version);
      const channel = await clone.openChannel();
      channel.destroy();
    }
  });

  test('process death is detected and named', async (t) => {
    const s = scenario({ FAKE_FC_DIE_ON: 'PATCH /vm' });
    const vm = track(t, await s.hypervisor.boot(s.spec));
    await assert.rejects(
      vm.pause(),
      /^FcvmError: Firecracker of VM vm\d+ exited with status 3 during pause; its output is in .*console\.log\.$/,
    );
    assert.deepEqual(await vm.exited, { code: 3, signal: null });
    await assert.rejects(vm.resume(), /exited with status 3 during resume/);
    await assert.rejects(vm.openChannel(), /exited with status 3 during the connection to the guest agent/);
    assert.deepEqual(await vm.stop(), { code: 3, signal: null });
    assert.equal(existsSync(join(s.spec.vmDir, 'firecracker.sock')), false);
  });

  test('a Firecracker that exits at start-up is reported with its status', async () => {
    const s = scenario({ FAKE_FC_EXIT_AT_START: 'Error creating the KVM object' });
    await assert.rejects(
      s.hypervisor.boot(s.spec),
      /exited with status 1 during start-up, before its API socket appeared/,
    );
    assert.match(readFileSync(s.spec.consoleLogPath, 'utf8'), /Error creating the KVM object/);
  });

  test('runs inside the given network namespace', async (t) => {
    const name = `fcvmt${process.pid}x${counter}`;
    const add = spawn('ip', ['netns', 'add', name], { stdio: 'ignore' });
    const [code] = (await once(add, 'exit')) as [number];
    assert.equal(code, 0, 'ip netns add (needs root)');
    t.after(async () => {
      await once(spawn('ip', ['netns', 'del', name], { stdio: 'ignore' }), 'exit');
    });
    const s = scenario();
    const vm = track(t, await s.hypervisor.boot({ ...s.spec, netnsPath: `/run/netns/${name}` }));
    const inode = statSync(`/run/netns/${name}`).ino;
    assert.equal(readlinkSync(`/proc/${vm.pid}/ns/net`), `net:[${inode}]`);
  });

  test('--no-swap puts Firecracker into its own swap-less scope, removed when the VM ends', async (t) => {
    const hierarchy = findMemoryHierarchy();
    assert.notEqual(hierarchy, null, 'this host has no memory cgroup controller');
    const s = scenario();
    const vm = track(t, await s.hypervisor.boot({ ...s.spec, noSwap: true }));
    const scopeDir = join(hierarchy!.mountPoint, SLICE_NAME, scopeName(vm.pid));
    const memoryLine = readFileSync(`/proc/${vm.pid}/cgroup`, 'utf8')
      .split('\n')
      .find((line) =>
        hierarchy!.version === 2 ? line.startsWith('0::') : line.split(':')[1]?.split(',').includes('memory'),
      );
    assert.equal(memoryLine?.split(':')[2], `/${SLICE_NAME}/${scopeName(vm.pid)}`);
    const setting = hierarchy!.version === 2 ? 'memory.swap.max' : 'memory.swappiness';
    assert.equal(readFileSync(join(scopeDir, setting), 'utf8').trim(), '0');
    await vm.stop();
    assert.equal(existsSync(scopeDir), false, 'scope removed');
  });

  test('Firecracker dies with fcvm, even when fcvm is killed with SIGKILL', async (t) => {
    const s = scenario();
    // .mts: the temp dir has no package.json saying "type": "module".
    const script = join(s.dir, 'owner.mts');
    writeFileSync(
      script,
      `import { FirecrackerHypervisor } from ${JSON.stringify(new URL('../../../src/hypervisor/firecracker/hypervisor.ts', import.meta.url).pathname)};
const h = new FirecrackerHypervisor({ binary: ${JSON.stringify(s.binary)}, version: { major: 1, minor: 16, patch: 1 } });
const vm = await h.boot(JSON.parse(process.argv[2]));
process.stdout.write(vm.pid + '\\n');
setInterval(() => {}, 1000);
`,
    );
    const owner = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(s.spec)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => {
      owner.kill('SIGKILL');
    });
    const line = await Promise.race([
      once(owner.stdout!, 'data').then(([chunk]) => chunk as Buffer),
      once(owner, 'exit').then(([code]) => assert.fail(`the owner process exited with ${code} before booting`)),
    ]);
    const pid = Number(line.toString().trim());
    assert.ok(isSameProcessAlive(pid));
    owner.kill('SIGKILL');
    await once(owner, 'exit');
    await assertGone(pid);
  });

  test('createFirecracker refuses versions below the minimum; probe reports why it cannot be used', async () => {
    const s = scenario({ FAKE_FC_VERSION: '1.9.1' });
    const data = makeDataDir(join(s.dir, 'data'));
    await assert.rejects(
      createFirecracker({ binary: s.binary, dataDir: data }),
      /1\.9\.1 .* is too old: fcvm needs v1\.10\.0 or newer/,
    );
    const good = fakeFirecrackerBinary(s.dir, bundle, {}, 'firecracker-good');
    const hypervisor = await createFirecracker({ binary: good, dataDir: data });
    assert.equal(hypervisor.kind, 'firecracker');
    assert.ok(existsSync(join(data.state, 'firecracker-versions.cache')));

    const probe = await probeFirecracker({ explicit: good });
    const kvm = checkKvm();
    if (kvm.usable) assert.deepEqual(probe, { usable: true, binary: good, version: { major: 1, minor: 16, patch: 1 } });
    else assert.deepEqual(probe, { usable: false, reason: kvm.reason });
    assert.deepEqual(await probeFirecracker({ explicit: good, kvmDevice: join(s.dir, 'no-kvm') }), {
      usable: false,
      // Without hardware virtualisation (nested hosts) that is the reason given before the device is looked at.
      reason: kvm.usable ? `${join(s.dir, 'no-kvm')} does not exist` : kvm.reason,
    });
    const old = await probeFirecracker({ explicit: s.binary, kvmDevice: kvm.usable ? '/dev/kvm' : undefined });
    assert.equal(old.usable, false);
    const missing = await probeFirecracker({ env: { PATH: '/nonexistent' } });
    assert.ok(!missing.usable && /no firecracker binary was found/.test(missing.reason));
  });

  // Runs last: checks what the adapter really sent in all the tests above, not only what its builders produce.
  test('every body the adapter sent in these tests conforms to firecracker.yaml', { skip: specSkipReason }, (t) => {
    const validatorFor = loadSpecValidators();
    const routes = Object.values(ENDPOINTS).map((e) => ({
      ...e,
      pattern: new RegExp(`^${e.path.replace('{id}', '[A-Za-z0-9_]+')}$`),
    }));
    let checked = 0;
    for (const entry of readdirSync(root)) {
      const log = join(root, entry, 'requests.jsonl');
      if (!existsSync(log)) continue;
      for (const line of readFileSync(log, 'utf8').trim().split('\n')) {
        const request = JSON.parse(line) as {
          method: string;
          path: string;
          body: unknown;
          status: number;
          answer: unknown;
        };
        if (request.method === 'GET' || request.body === null) continue;
        const route = routes.find((r) => r.method === request.method && r.pattern.test(request.path));
        if (!route) continue; // raw requests the tests sent on purpose (unknown paths)
        const validate = validatorFor(route.spec);
        // The strict-parser test sends malformed bodies on purpose, and the fake rejected them as such.
        if (request.status === 400 && /deserializing the json body/.test(JSON.stringify(request.answer))) continue;
        assert.ok(
          validate(request.body),
          `${request.method} ${request.path} ${JSON.stringify(request.body)}: ${JSON.stringify(validate.errors)}`,
        );
        checked++;
      }
    }
    assert.ok(checked > 100, `only ${checked} bodies checked`);
    t.diagnostic(`${checked} bodies sent by the adapter checked against the spec`);
  });
});
