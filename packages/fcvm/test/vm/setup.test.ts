/**
 * `fcvm setup` end to end: builds the assets (into the shared test cache, from scratch on a fresh
 * machine), boots them under QEMU (TCG: the machine's KVM is not usable by QEMU) with a throw-away
 * qcow2 overlay, checks that a second setup is a no-op, that `--check --json` reports everything,
 * and that `--force` rebuilds.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AGENT_STARTED_MARKER } from '@fcvm/protocol';
import { type AssetPaths, createAgentInitrd, type InjectedFile } from '../../src/assets/index.js';
import { acquireBuildLock, mountsBelow, removeTree } from '../../src/assets/store.js';
import { dataDir } from '../../src/data-dir.js';
import { agentBundle, testAssets, testAssetsDataDir } from '../helpers/assets.js';
import { CLI_BUNDLE, runCli, runCliAsync } from '../helpers/cli.js';

const BOOT_TIMEOUT_MS = 120_000;

function scratchDir(prefix: string): string {
  return mkdtempSync(join('/var/tmp', `fcvm-test-${prefix}-`));
}

/** Host TSC frequency: without `tsc_early_khz` the microvm guest sometimes hangs calibrating under TCG. */
function tscKhz(): number {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  assert.ok(mhz, '/proc/cpuinfo has no "cpu MHz"');
  return Math.round(Number(mhz) * 1000);
}

interface BootResult {
  console: string;
  exitCode: number | null;
  timedOut: boolean;
}

/** Boots kernel + initrd + rootfs (through a qcow2 overlay in `dir`) until the VM ends or the timeout. */
async function boot(
  assets: AssetPaths,
  initrd: string,
  dir: string,
  options: { memoryMib?: number; extraArgs?: readonly string[] } = {},
): Promise<BootResult> {
  const overlay = join(dir, 'root.qcow2');
  const created = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', assets.rootfs, '-F', 'raw', overlay]);
  assert.equal(created.status, 0, `qemu-img create failed: ${created.stderr}`);
  const argv = [
    '-machine',
    'microvm',
    '-accel',
    'tcg',
    '-m',
    String(options.memoryMib ?? 512),
    '-smp',
    '2',
    '-nographic',
    '-no-reboot',
    '-kernel',
    assets.kernel,
    '-initrd',
    initrd,
    '-append',
    `console=ttyS0 panic=-1 tsc_early_khz=${tscKhz()}`,
    '-drive',
    `id=root,file=${overlay},format=qcow2,if=none,cache=unsafe`,
    '-device',
    'virtio-blk-device,drive=root',
    ...(options.extraArgs ?? []),
  ];
  const child = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, BOOT_TIMEOUT_MS);
  try {
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });
    return { console: output, exitCode, timedOut };
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

function assertPoweredOff(result: BootResult): void {
  assert.equal(
    result.timedOut,
    false,
    `the VM did not finish within ${BOOT_TIMEOUT_MS} ms:\n${result.console.slice(-3000)}`,
  );
  assert.equal(result.exitCode, 0, `QEMU exited with ${result.exitCode}:\n${result.console.slice(-3000)}`);
  // With -no-reboot a panic or reboot also ends QEMU with 0: only the power-down line proves a clean poweroff.
  assert.match(
    result.console,
    /reboot: Power down/,
    `the VM did not power itself off:\n${result.console.slice(-3000)}`,
  );
  assert.doesNotMatch(result.console, /Kernel panic/);
}

/** The bundled CLI (scripts/test.sh builds it) with the default config and the given data dir. */
function fcvmEnv(dataDirRoot: string): NodeJS.ProcessEnv {
  return { FCVM_DATA_DIR: dataDirRoot, FCVM_CONFIG: '/dev/null' };
}

interface FileIdentity {
  ino: number;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  sha256?: string;
}

/** Every file under `root` with inode, size, times and (below 200 MB) content hash. */
function snapshotTree(root: string): Map<string, FileIdentity> {
  const files = new Map<string, FileIdentity>();
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const st = statSync(path, { bigint: true });
    files.set(path, {
      ino: Number(st.ino),
      size: Number(st.size),
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      sha256: st.size < 200_000_000n ? createHash('sha256').update(readFileSync(path)).digest('hex') : undefined,
    });
  }
  return files;
}

test('fcvm setup builds the kernel, vmlinux, initrd, rootfs and test image', async () => {
  const started = performance.now();
  const assets = await testAssets();
  process.stderr.write(`test assets ready in ${((performance.now() - started) / 1000).toFixed(1)}s\n`);
  for (const path of [assets.kernel, assets.vmlinux, assets.initrd, assets.rootfs, assets.testImage]) {
    assert.ok(statSync(path).size > 0, `${path} is empty`);
  }
  assert.deepEqual(
    [...readFileSync(assets.vmlinux).subarray(0, 4)],
    [0x7f, 0x45, 0x4c, 0x46],
    'vmlinux is an ELF file',
  );
});

test('the guest boots to the injected agent, which prints its marker, and powers itself off', async (t) => {
  const assets = await testAssets();
  const dir = scratchDir('boot');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const initrd = join(dir, 'initrd.gz');
  await createAgentInitrd({ baseInitrd: assets.initrd, agentScript: agentBundle(), outPath: initrd });
  const result = await boot(assets, initrd, dir);
  assertPoweredOff(result);
  assert.match(result.console, new RegExp(`${AGENT_STARTED_MARKER} protocol=\\d+ node=v18`));
});

test('injected extra files reach /run/fcvm, the agent port is linked by name, podman runs the test image without systemd', async (t) => {
  const assets = await testAssets();
  const dir = scratchDir('probe');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A stand-in agent that reports what the real agent relies on, then powers off.
  const probe = join(dir, 'probe.mjs');
  writeFileSync(
    probe,
    `import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
const run = (cmd, args) => { try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim(); } catch (e) { return 'FAILED ' + e.status + ' ' + e.stderr; } };
console.log('PROBE token=' + readFileSync('/run/fcvm/session/token', 'utf8').trim());
console.log('PROBE token-mode=' + (statSync('/run/fcvm/session/token').mode & 0o777).toString(8));
console.log('PROBE modules=' + ['virtio_console', 'vmw_vsock_virtio_transport', 'virtio_net'].filter((m) => { try { return statSync('/sys/module/' + m).isDirectory(); } catch { return false; } }).join(','));
console.log('PROBE cgroup=' + run('stat', ['-f', '-c', '%T', '/sys/fs/cgroup']));
console.log('PROBE hostname=' + run('hostname', []));
console.log('PROBE port=' + run('readlink', ['/dev/virtio-ports/fcvm.agent']));
console.log('PROBE cni=' + run('ls', ['/etc/cni/net.d']));
console.log('PROBE load=' + run('podman', ['load', '-q', '-i', '/run/fcvm/image.tar']));
console.log('PROBE run=' + run('podman', ['run', '--rm', '--network', 'none', 'localhost/fcvm-busybox', 'echo', 'hello-from-container']));
execFileSync('/usr/local/bin/busybox', ['poweroff', '-f']);
`,
  );
  const extraFiles: InjectedFile[] = [
    { path: 'session/token', data: 'token-4711\n' },
    { path: 'image.tar', data: readFileSync(assets.testImage), mode: 0o644 },
  ];
  const initrd = join(dir, 'initrd.gz');
  await createAgentInitrd({ baseInitrd: assets.initrd, agentScript: probe, outPath: initrd, extraFiles });
  // A named virtio-serial port, as the QEMU backend gives the agent: the guest has no udev to link it.
  const port = [
    '-device',
    'virtio-serial-device',
    '-chardev',
    'null,id=agent',
    '-device',
    'virtserialport,chardev=agent,name=fcvm.agent',
  ];
  const result = await boot(assets, initrd, dir, { memoryMib: 1024, extraArgs: port });
  assertPoweredOff(result);
  const probes = new Map(
    [...result.console.matchAll(/^PROBE (\S+?)=(.*?)\r?$/gm)].map((m) => [m[1], m[2]] as [string, string]),
  );
  assert.equal(probes.get('token'), 'token-4711', result.console);
  assert.equal(probes.get('token-mode'), '600');
  assert.equal(probes.get('modules'), 'virtio_console,vmw_vsock_virtio_transport,virtio_net');
  assert.equal(probes.get('cgroup'), 'cgroup2fs');
  assert.equal(probes.get('hostname'), 'fcvm');
  assert.match(probes.get('port') ?? '', /^\.\.\/vport\d+p\d+$/, 'the stage-1 init links /dev/virtio-ports/NAME');
  assert.equal(probes.get('cni'), '', 'the stale podman CNI config is gone');
  assert.equal(probes.get('load'), 'Loaded image: localhost/fcvm-busybox:latest', result.console);
  assert.equal(probes.get('run'), 'hello-from-container', result.console);
});

test('a second fcvm setup changes no asset file, and --check --json lists every asset as present', async () => {
  const assets = await testAssets();
  const root = testAssetsDataDir().root;
  const before = snapshotTree(join(root, 'assets'));
  const second = runCli(['setup'], fcvmEnv(root));
  assert.equal(second.status, 0, second.stderr);
  assert.doesNotMatch(second.stderr, /building/, 'nothing was rebuilt');
  assert.deepEqual(snapshotTree(join(root, 'assets')), before);

  const check = runCli(['setup', '--check', '--json'], fcvmEnv(root));
  assert.equal(check.status, 0, check.stderr);
  const report = JSON.parse(check.stdout) as {
    complete: boolean;
    assets: { kind: string; path: string; present: boolean }[];
  };
  assert.equal(report.complete, true);
  assert.deepEqual(
    report.assets.map((a) => [a.kind, a.present]),
    [
      ['kernel', true],
      ['initrd', true],
      ['rootfs', true],
      ['testImage', true],
    ],
  );
  assert.deepEqual(
    report.assets.map((a) => a.path),
    [join(assets.kernel, '..'), assets.initrd, assets.rootfs, assets.testImage],
  );
});

test('--check on an empty data dir reports every asset missing with exit status 1', (t) => {
  const root = scratchDir('empty');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const check = runCli(['setup', '--check', '--json'], fcvmEnv(root));
  assert.equal(check.status, 1, check.stderr);
  const report = JSON.parse(check.stdout) as { complete: boolean; assets: { present: boolean }[] };
  assert.equal(report.complete, false);
  assert.equal(report.assets.length, 4);
  assert.ok(report.assets.every((a) => !a.present));
});

test('--force rebuilds every asset and removes the scratch dirs of dead builds', async (t) => {
  const assets = await testAssets();
  const root = scratchDir('force');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // Start from the shared assets (hard links: cheap, and the shared cache is left untouched) plus
  // the leftovers of a build whose process is gone.
  const shared = join(testAssetsDataDir().root, 'assets');
  const copied = spawnSync('cp', ['-al', shared, join(root, 'assets')]);
  assert.equal(copied.status, 0, String(copied.stderr));
  const stale = join(root, 'tmp', 'build-999999999-1-deadbeef');
  mkdirSync(join(stale, 'rootfs'), { recursive: true });
  const sharedBefore = snapshotTree(shared);
  const before = snapshotTree(join(root, 'assets'));

  // Builds everything again (about a minute): no timeout on the CLI, but it runs no VM.
  const forced = await runCliAsync(['setup', '--force'], fcvmEnv(root));
  assert.equal(forced.status, 0, forced.stderr);
  assert.match(forced.stderr, /removed the scratch directory of an interrupted build/);
  assert.throws(() => statSync(stale), /ENOENT/);
  assert.deepEqual(
    readdirSync(join(root, 'tmp')).filter((name) => name.startsWith('build-')),
    [],
    'the build left nothing behind in tmp/',
  );

  const after = snapshotTree(join(root, 'assets'));
  assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), 'same asset names: same inputs');
  // The shared cache may also hold assets of older inputs: only the current ones are rebuilt.
  const currentNames = [dirname(assets.kernel), assets.initrd, assets.rootfs, assets.testImage].map((p) =>
    relative(shared, p),
  );
  const current = [...after.keys()].filter((path) =>
    currentNames.some(
      (name) => path === join(root, 'assets', name) || path.startsWith(join(root, 'assets', name, '/')),
    ),
  );
  assert.ok(current.length > 4, 'the current assets were found');
  for (const path of current) {
    assert.notEqual(after.get(path)?.ino, before.get(path)?.ino, `${path} was rebuilt`);
  }
  // Deterministic builders produce identical bytes again.
  for (const path of current.filter((p) => /initrd-|fcvm-busybox-|vmlinux$/.test(p))) {
    assert.equal(after.get(path)?.sha256, before.get(path)?.sha256, `${path} has the same content`);
  }
  // Hard links change ctime (link count): compare everything else.
  const withoutCtime = (tree: Map<string, FileIdentity>) =>
    new Map([...tree].map(([path, { ctimeNs: _ctime, ...rest }]) => [path, rest]));
  assert.deepEqual(withoutCtime(snapshotTree(shared)), withoutCtime(sharedBefore), 'the shared cache was not modified');
});

test('a setup killed mid-build publishes nothing; the next one cleans up after it (and its orphaned tools) and builds', async (t) => {
  const assets = await testAssets();
  const root = scratchDir('killed');
  const dir = dataDir(root);
  let first: ReturnType<typeof spawn> | undefined;
  t.after(async () => {
    // If the test failed before its kill, the first setup is still running: end it too.
    if (first !== undefined && first.exitCode === null && first.signalCode === null) {
      const ended = new Promise((resolve) => first?.on('close', resolve));
      first.kill('SIGKILL');
      await ended;
    }
    // An orphaned mmdebstrap holds the build lock while it runs (and may have file systems mounted
    // in its chroot): wait for it, then remove without crossing mount points.
    const lock = await acquireBuildLock(dir, { timeoutMs: 10 * 60_000 });
    lock.release();
    await removeTree(root);
  });
  // Everything but the rootfs comes from the shared cache, so the build goes straight to mmdebstrap.
  const copied = spawnSync('cp', ['-al', join(testAssetsDataDir().root, 'assets'), dir.assets]);
  assert.equal(copied.status, 0, String(copied.stderr));
  const rootfs = join(dir.assets, relative(testAssetsDataDir().assets, assets.rootfs));
  rmSync(rootfs);

  first = spawn(process.execPath, [CLI_BUNDLE, 'setup'], {
    env: { ...process.env, ...fcvmEnv(root) },
    stdio: 'ignore',
  });
  const firstExit = new Promise((resolve) => first.on('close', resolve));
  const deadline = Date.now() + 5 * 60_000;
  const mmdebstrapStarted = () =>
    existsSync(dir.tmp) &&
    readdirSync(dir.tmp).some((name) => name.startsWith('build-') && existsSync(join(dir.tmp, name, 'rootfs', 'etc')));
  while (!mmdebstrapStarted()) {
    assert.ok(Date.now() < deadline, 'mmdebstrap did not start within 5 minutes');
    assert.equal(first.exitCode, null, 'fcvm setup ended before mmdebstrap started');
    await sleep(200);
  }
  first.kill('SIGKILL');
  await firstExit;
  assert.equal(existsSync(rootfs), false, 'no rootfs was published');

  const second = spawnSync(process.execPath, [CLI_BUNDLE, 'setup'], {
    env: { ...process.env, ...fcvmEnv(root) },
    encoding: 'utf8',
    timeout: 10 * 60_000,
  });
  assert.equal(second.status, 0, second.stderr);
  // The orphaned mmdebstrap either still runs (it holds the lock: the second setup waits for it) or
  // has died of SIGPIPE on its next write to the dead fcvm, maybe leaving its chroot mounts behind.
  assert.match(second.stderr, /removed the scratch directory of an interrupted build/);
  assert.ok(statSync(rootfs).size > 0);
  assert.deepEqual(
    readdirSync(dir.tmp).filter((name) => name.startsWith('build-')),
    [],
  );
  assert.deepEqual(mountsBelow(root), [], 'nothing is left mounted');
});
