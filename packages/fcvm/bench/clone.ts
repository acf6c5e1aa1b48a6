/**
 * `npm run bench:clone`: what a clone saves over a cold start, on this host's backend (QEMU here).
 *
 *   1. cold: `fcvm podman run` of a ticking container -> its first output line (the reference);
 *      `fcvm snapshot run` of a snapshot of that container -> the clone's first output line; ratio.
 *   2. the clone's orchestration split by step (fcvm's own `is up:` info line) and the guest's restore
 *      steps (the agent's `restore step` console lines).
 *   3. host memory: PSS of the VMM processes of 1, 5 and 10 clones of one 512 MiB VM, next to the one
 *      source VM (whose PSS includes its RAM file in /dev/shm).
 * Uses the built CLI (npm run build) and the shared test assets; everything lives in a temp data dir
 * that is removed at the end, and every fcvm process it starts is stopped. Prints numbers only.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { testAssets, testAssetsDataDir } from '../test/helpers/assets.js';
import { CLI_BUNDLE } from '../test/helpers/cli.js';

const IMAGE = 'localhost/fcvm-busybox';
const TICKER = 'while :; do echo tick; sleep 0.2; done';
const SIZES = (process.env.BENCH_CLONES ?? '1,5,10').split(',').map(Number);

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

await testAssets();
const dataDir = mkdtempSync('/tmp/fcvm-bench-');
symlinkSync(testAssetsDataDir().assets, join(dataDir, 'assets'));
// The guests look nothing up and sync no clock from outside: resolver and NTP point at nothing real.
const env = { ...process.env, FCVM_DATA_DIR: dataDir, FCVM_LOG: 'info', FCVM_DNS: '127.0.0.1', FCVM_NTP: '127.0.0.1' };
const children: ChildProcessWithoutNullStreams[] = [];

interface Started {
  readonly child: ChildProcessWithoutNullStreams;
  readonly firstOutputMs: Promise<number>;
  stderr(): string;
}

function start(args: readonly string[]): Started {
  const begun = performance.now();
  const child = spawn(process.execPath, [CLI_BUNDLE, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const firstOutputMs = new Promise<number>((resolve, reject) => {
    child.stdout.once('data', () => resolve(performance.now() - begun));
    child.once('close', () => reject(new Error(`fcvm ${args.join(' ')} ended before output: ${err}`)));
  });
  child.stdout.resume();
  // Awaited only for the first two; a clone of the memory part that fails shows in waitHealthy.
  firstOutputMs.catch(() => undefined);
  return { child, firstOutputMs, stderr: () => err };
}

function fcvm(args: readonly string[]): string {
  return execFileSync(process.execPath, [CLI_BUNDLE, ...args], { env, encoding: 'utf8', timeout: 300_000 });
}

async function stop(started: Started): Promise<void> {
  if (started.child.exitCode !== null) return;
  const closed = new Promise((resolve) => started.child.once('close', resolve));
  started.child.kill('SIGTERM');
  await closed;
}

interface LsRecord {
  name: string;
  health_status: string;
  children: { pid: number; role: string }[];
}

async function waitHealthy(names: readonly string[]): Promise<LsRecord[]> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const records = JSON.parse(fcvm(['ls', '--json'])) as LsRecord[];
    const ready = names.map((name) => records.find((r) => r.name === name && r.health_status === 'healthy'));
    if (ready.every((r) => r !== undefined)) return ready as LsRecord[];
    if (Date.now() > deadline) throw new Error(`not healthy in time: ${names.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function pssMib(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) / 1024;
}

function vmmPids(records: readonly LsRecord[]): number[] {
  return records.flatMap((r) =>
    r.children.filter((c) => c.role === 'qemu' || c.role === 'firecracker').map((c) => c.pid),
  );
}

try {
  print('# fcvm bench:clone (backend chosen by auto; 512 MiB, 2 vCPU)');
  const cold = start(['podman', 'run', '--name', 'source', '--mem', '512', '--cpu', '2', IMAGE, 'sh', '-c', TICKER]);
  const coldMs = await cold.firstOutputMs;
  const [sourceRecord] = await waitHealthy(['source']);
  fcvm(['snapshot', 'create', 'source']);
  const clone = start(['snapshot', 'run', '--snapshot', 'source', '--name', 'first']);
  const cloneMs = await clone.firstOutputMs;
  print(`cold podman run -> first output:   ${Math.round(coldMs)} ms`);
  print(`snapshot run    -> first output:   ${Math.round(cloneMs)} ms`);
  print(`speed-up: ${(coldMs / cloneMs).toFixed(1)}x`);
  await waitHealthy(['first']);
  print(`clone orchestration: ${/is up: (.*)$/m.exec(clone.stderr())?.[1] ?? '(no line)'}`);
  const cloneVmDir = readdirSync(join(dataDir, 'vms'))
    .map((d) => join(dataDir, 'vms', d, 'console.log'))
    .find((f) => readFileSync(f, 'utf8').includes('restore complete'));
  const guestSteps = cloneVmDir === undefined ? '' : readFileSync(cloneVmDir, 'utf8');
  print(
    `guest restore: ${[...guestSteps.matchAll(/fc-agent: (restore (?:step|complete).*)$/gm)].map((m) => m[1]).join('; ')}`,
  );
  await stop(clone);

  const sourcePss = vmmPids([sourceRecord as LsRecord]).reduce((sum, pid) => sum + pssMib(pid), 0);
  print(`PSS of the source VM's VMM: ${sourcePss.toFixed(0)} MiB`);
  for (const size of SIZES) {
    const names = Array.from({ length: size }, (_, i) => `pss${size}-${i}`);
    const clones = names.map((name) => start(['snapshot', 'run', '--snapshot', 'source', '--name', name]));
    try {
      const records = await waitHealthy(names).catch((err: unknown) => {
        print(`${size} clone(s): ${(err as Error).message} (software emulation on this host's cores)`);
        return null;
      });
      if (records === null) continue;
      const pids = vmmPids(records);
      const total = pids.reduce((sum, pid) => sum + pssMib(pid), 0);
      print(
        `${size} clone(s): PSS total ${total.toFixed(0)} MiB, ${(total / size).toFixed(0)} MiB per clone (one VM: ${sourcePss.toFixed(0)} MiB)`,
      );
    } finally {
      await Promise.all(clones.map(stop));
    }
  }
  await stop(cold);
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('close', r)) : null)));
  rmSync(dataDir, { recursive: true, force: true });
}
