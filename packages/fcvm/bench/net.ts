/**
 * `npm run bench:net` (root): numbers, not a test.
 *
 * 1. Per-VM network setup and teardown time for each mode (network/ called directly, no VM), and in
 *    the same run the containernetworking `bridge` plugin (Debian containernetworking-plugins) doing
 *    the equivalent work the way a CNI runtime invokes it (netns add, ADD with host-local IPAM and
 *    ipMasq; DEL, netns del), with the ratio.
 * 2. Guest-to-host TCP throughput per mode (a Node sender in a real VM, a receiver on the host),
 *    beside host loopback throughput measured with the same sender and receiver. Skip with
 *    BENCH_NET_THROUGHPUT=0 (it boots one VM per mode; slow under emulation).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type NetworkMode, setupNetwork } from '../src/network/index.js';
import { Registry } from '../src/state/registry.js';
import { DEFAULT_TEST_ASSETS_DIR } from '../test/helpers/assets.js';
import { CLI_BUNDLE } from '../test/helpers/cli.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const SEND_SECONDS = Number(process.env.BENCH_SEND_SECONDS ?? 5);
const CNI_DIR = '/usr/lib/cni';

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function fcvmSetupTeardown(mode: NetworkMode, registry: Registry, runDir: string) {
  const vmId = `vm-bench${Math.random().toString(16).slice(2, 14)}`;
  await registry.save({ vm_id: vmId, pid: process.pid });
  const t0 = performance.now();
  const network = await setupNetwork(
    {
      mode,
      vmId,
      publish: [{ hostIp: null, hostPort: 18080, guestPort: 80, protocol: 'tcp' }],
      dnsServers: [],
      registry,
    },
    runDir,
  );
  const t1 = performance.now();
  await network.release();
  const t2 = performance.now();
  await registry.remove(vmId);
  return { setup: t1 - t0, teardown: t2 - t1 };
}

function cni(command: 'ADD' | 'DEL', netns: string, id: string, ipamDir: string): void {
  const config = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'fcvmbench',
    type: 'bridge',
    bridge: 'fcvmbench0',
    isGateway: true,
    ipMasq: true,
    ipam: { type: 'host-local', subnet: '10.213.0.0/24', dataDir: ipamDir },
  });
  const result = spawnSync(join(CNI_DIR, 'bridge'), [], {
    input: config,
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: CNI_DIR,
    },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`CNI bridge ${command} failed: ${result.stdout}${result.stderr}`);
}

function cniSetupTeardown(ipamDir: string) {
  const id = `bench${Math.random().toString(16).slice(2, 10)}`;
  const netns = `fcvmbench-${id}`;
  const t0 = performance.now();
  execFileSync('ip', ['netns', 'add', netns]);
  try {
    cni('ADD', `/run/netns/${netns}`, id, ipamDir);
    const t1 = performance.now();
    cni('DEL', `/run/netns/${netns}`, id, ipamDir);
    execFileSync('ip', ['netns', 'del', netns]);
    const t2 = performance.now();
    return { setup: t1 - t0, teardown: t2 - t1 };
  } catch (err) {
    execFileSync('ip', ['netns', 'del', netns]);
    throw err;
  }
}

function nftTables(): string {
  return execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
}

async function setupBench(): Promise<void> {
  const natBefore = nftTables().includes('table ip nat\n');
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-bench-net-'));
  const registry = new Registry(join(dir, 'state'));
  print(`# per-VM network setup / teardown, median of ${ROUNDS} (ms)`);
  try {
    const rows: Array<[string, { setup: number; teardown: number }]> = [];
    const measure = async (name: string, one: () => Promise<{ setup: number; teardown: number }>) => {
      const samples = [];
      for (let i = 0; i < ROUNDS; i++) samples.push(await one());
      const row = { setup: median(samples.map((s) => s.setup)), teardown: median(samples.map((s) => s.teardown)) };
      rows.push([name, row]);
      print(
        `${name.padEnd(28)} setup ${row.setup.toFixed(1).padStart(7)}  teardown ${row.teardown.toFixed(1).padStart(7)}`,
      );
    };
    await measure('cni bridge plugin', async () => cniSetupTeardown(join(dir, 'ipam')));
    await measure('fcvm rootless (pasta)', () => fcvmSetupTeardown('rootless', registry, dir));
    await measure('fcvm bridged (veth+nft)', () => fcvmSetupTeardown('bridged', registry, dir));
    const reference = rows[0]?.[1] as { setup: number; teardown: number };
    for (const [name, row] of rows.slice(1)) {
      print(
        `${name.padEnd(28)} / cni: setup x${(row.setup / reference.setup).toFixed(2)}  teardown x${(row.teardown / reference.teardown).toFixed(2)}`,
      );
    }
  } finally {
    try {
      execFileSync('ip', ['link', 'del', 'fcvmbench0'], { stdio: 'ignore' });
    } catch {
      // The CNI bridge was never made.
    }
    rmSync(dir, { recursive: true, force: true });
    // The CNI plugin's ipMasq (iptables-nft) leaves an empty `table ip nat` behind: remove it if it made it.
    if (!natBefore && nftTables().includes('table ip nat\n')) execFileSync('nft', ['delete', 'table', 'ip', 'nat']);
  }
}

/** Counts bytes from the first connection until it closes; resolves with MB/s. */
function receiver(host: string): Promise<{ port: number; result: Promise<number> }> {
  return new Promise((resolve) => {
    let done: (rate: number) => void = () => {};
    const result = new Promise<number>((r) => {
      done = r;
    });
    const server = createServer((socket) => {
      let bytes = 0;
      let start = 0;
      socket.on('data', (chunk) => {
        if (start === 0) start = performance.now();
        bytes += chunk.length;
      });
      socket.on('close', () => {
        server.close();
        done(bytes / 1e6 / ((performance.now() - start) / 1000));
      });
    });
    server.listen(0, host, () => resolve({ port: (server.address() as { port: number }).port, result }));
  });
}

/** Sends for SEND_SECONDS; the same script runs on the host and in guests (Node 18). */
const SENDER = `const net=require('net');const [h,p,s]=process.argv.slice(1);const buf=Buffer.alloc(65536,1);
const c=net.connect(Number(p),h,()=>{const end=Date.now()+Number(s)*1000;const pump=()=>{while(Date.now()<end){if(!c.write(buf))return c.once('drain',pump);}c.end();};pump();});`;

async function hostLoopbackRate(): Promise<number> {
  const { port, result } = await receiver('127.0.0.1');
  spawn(process.execPath, ['-e', SENDER, '127.0.0.1', String(port), String(SEND_SECONDS)], { stdio: 'inherit' });
  return result;
}

async function guestRate(mode: NetworkMode, env: NodeJS.ProcessEnv): Promise<number> {
  const name = `bench-${mode}`;
  const run = spawn(
    process.execPath,
    [
      CLI_BUNDLE,
      'podman',
      'run',
      '--name',
      name,
      '--network',
      mode,
      '--mem',
      '512',
      '--cpu',
      '2',
      '--hypervisor',
      'qemu',
      'localhost/fcvm-busybox',
      'sleep',
      '600',
    ],
    { env, stdio: 'ignore' },
  );
  try {
    const deadline = Date.now() + 300_000;
    let hostSide: string | undefined;
    while (Date.now() < deadline && hostSide === undefined) {
      await new Promise((r) => setTimeout(r, 1000));
      const ls = spawnSync(process.execPath, [CLI_BUNDLE, 'ls', '--json'], { env, encoding: 'utf8' });
      const record = (
        JSON.parse(ls.stdout || '[]') as Array<{
          name: string;
          status: string;
          config: { network: { host_ip: string | null } };
        }>
      ).find((r) => r.name === name && r.status === 'running');
      if (record) hostSide = mode === 'rootless' ? '10.0.2.2' : (record.config.network.host_ip ?? undefined);
    }
    if (hostSide === undefined) throw new Error(`${name} did not start`);
    // rootless: the guest's 10.0.2.2 is the host's loopback; bridged: the host's end of the veth.
    const { port, result } = await receiver(mode === 'rootless' ? '127.0.0.1' : hostSide);
    spawnSync(
      process.execPath,
      [
        CLI_BUNDLE,
        'exec',
        '--name',
        name,
        '--vm',
        '--',
        'node',
        '-e',
        SENDER,
        hostSide,
        String(port),
        String(SEND_SECONDS),
      ],
      {
        env,
        stdio: 'ignore',
        timeout: 120_000,
      },
    );
    return await Promise.race([result, new Promise<number>((r) => setTimeout(() => r(Number.NaN), 10_000))]);
  } finally {
    run.kill('SIGTERM');
    await new Promise((r) => run.once('exit', r));
  }
}

async function throughputBench(): Promise<void> {
  const dataDir = mkdtempSync(join('/tmp', 'fcvm-bench-net-'));
  symlinkSync(join(process.env.FCVM_TEST_ASSETS_DIR ?? DEFAULT_TEST_ASSETS_DIR, 'assets'), join(dataDir, 'assets'));
  const env = { ...process.env, FCVM_DATA_DIR: dataDir, FCVM_DNS: '127.0.0.1', FCVM_NTP: '' };
  print(`# guest-to-host TCP throughput, ${SEND_SECONDS} s of 64 KiB writes (MB/s)`);
  try {
    print(`host loopback (reference)    ${(await hostLoopbackRate()).toFixed(1)}`);
    for (const mode of ['rootless', 'bridged'] as const) {
      print(`guest -> host, ${mode.padEnd(13)} ${(await guestRate(mode, env)).toFixed(1)}`);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await setupBench();
if (process.env.BENCH_NET_THROUGHPUT !== '0') await throughputBench();
