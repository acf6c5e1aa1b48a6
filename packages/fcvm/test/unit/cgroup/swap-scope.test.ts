/**
 * `--no-swap` scopes on this host's real cgroup hierarchy (needs root). On the CI machines the memory
 * controller is on cgroup v1, so the v1 path is what runs here; the v2 path runs on v2 hosts.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { findMemoryHierarchy } from '../../../src/cgroup/memory-hierarchy.js';
import {
  disableSwap,
  SLICE_NAME,
  type SwapScope,
  scopeName,
  sweepStaleSwapScopes,
} from '../../../src/cgroup/swap-scope.js';

const hierarchy = findMemoryHierarchy();
const slicePath = hierarchy === null ? '' : path.join(hierarchy.mountPoint, SLICE_NAME);
const children: ChildProcess[] = [];
const scopes: SwapScope[] = [];

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const scope of scopes) await scope.release();
});

function precondition(): void {
  assert.equal(process.getuid?.(), 0, 'cgroup tests need root');
  assert.notEqual(hierarchy, null, 'this host has no memory cgroup controller');
}

async function spawnSleeper(): Promise<ChildProcess> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child;
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** The path of `pid`'s memory cgroup, relative to the hierarchy root, from /proc/PID/cgroup. */
function memoryCgroupOf(pid: number): string {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, controllers, cgroupPath] = line.split(':');
    const isMemoryLine = hierarchy?.version === 2 ? controllers === '' : controllers?.split(',').includes('memory');
    if (isMemoryLine && cgroupPath !== undefined) return cgroupPath;
  }
  throw new Error(`no memory cgroup line for PID ${pid}`);
}

function readSetting(scopePath: string, file: string): string {
  return readFileSync(path.join(scopePath, file), 'utf8').trim();
}

function assertSwapDisabled(scope: SwapScope): void {
  assert.ok(scope.scopePath !== null);
  if (hierarchy?.version === 2) {
    assert.equal(readSetting(scope.scopePath, 'memory.swap.max'), '0');
  } else {
    assert.equal(readSetting(scope.scopePath, 'memory.swappiness'), '0');
    if (existsSync(path.join(scope.scopePath, 'memory.memsw.limit_in_bytes'))) {
      assert.equal(
        readSetting(scope.scopePath, 'memory.memsw.limit_in_bytes'),
        readSetting(scope.scopePath, 'memory.limit_in_bytes'),
      );
    }
  }
}

function ourScopesLeft(pids: readonly number[]): string[] {
  if (!existsSync(slicePath)) return [];
  const names = new Set(pids.map(scopeName));
  return readdirSync(slicePath).filter((entry) => names.has(entry));
}

test('a spawned process lands in its own scope with swap disabled, and release removes it', async () => {
  precondition();
  const userCgroup = memoryCgroupOf(process.pid);
  const child = await spawnSleeper();
  const pid = child.pid!;

  const scope = await disableSwap(pid);
  scopes.push(scope);
  assert.deepEqual(scope.warnings, [], 'no warnings expected on this host');
  assert.equal(scope.swapDisabled, true);
  assert.equal(scope.cgroupVersion, hierarchy?.version);
  assert.equal(scope.scopePath, path.join(slicePath, scopeName(pid)));
  assertSwapDisabled(scope);
  assert.equal(memoryCgroupOf(pid), `/${SLICE_NAME}/${scopeName(pid)}`);
  assert.deepEqual(readSetting(scope.scopePath!, 'cgroup.procs').split('\n'), [String(pid)]);
  // The caller's own cgroup is left alone.
  assert.equal(memoryCgroupOf(process.pid), userCgroup);

  await killAndWait(child);
  await scope.release();
  assert.equal(existsSync(scope.scopePath!), false, 'scope directory removed');
  assert.deepEqual(ourScopesLeft([pid]), []);
  await scope.release(); // idempotent
});

test('two processes get two scopes, and nothing of theirs is left after release', async () => {
  precondition();
  const first = await spawnSleeper();
  const second = await spawnSleeper();
  const [scopeA, scopeB] = await Promise.all([disableSwap(first.pid!), disableSwap(second.pid!)]);
  scopes.push(scopeA, scopeB);
  assert.equal(scopeA.swapDisabled && scopeB.swapDisabled, true);
  assert.notEqual(scopeA.scopePath, scopeB.scopePath);
  assertSwapDisabled(scopeA);
  assertSwapDisabled(scopeB);
  assert.equal(memoryCgroupOf(first.pid!), `/${SLICE_NAME}/${scopeName(first.pid!)}`);
  assert.equal(memoryCgroupOf(second.pid!), `/${SLICE_NAME}/${scopeName(second.pid!)}`);

  // Releasing one VM's scope leaves the other VM's scope (and its process) alone.
  await killAndWait(first);
  await scopeA.release();
  assert.equal(existsSync(scopeA.scopePath!), false);
  assert.equal(memoryCgroupOf(second.pid!), `/${SLICE_NAME}/${scopeName(second.pid!)}`);

  await killAndWait(second);
  await Promise.all([scopeB.release(), scopeB.release()]);
  assert.deepEqual(ourScopesLeft([first.pid!, second.pid!]), []);
  // The slice goes with its last scope (other fcvm VMs on this host may still hold one).
  if (existsSync(slicePath)) assert.ok(readdirSync(slicePath).some((entry) => /^fcvm-\d+\.scope$/.test(entry)));
});

test('release moves a still-running process back to the hierarchy root before removing its scope', async () => {
  precondition();
  const child = await spawnSleeper();
  const scope = await disableSwap(child.pid!);
  scopes.push(scope);
  assert.equal(scope.swapDisabled, true);
  await scope.release();
  assert.equal(existsSync(scope.scopePath!), false);
  assert.equal(memoryCgroupOf(child.pid!), '/');
  await killAndWait(child);
});

test('a PID that does not exist yields a warning, not an error, and leaves no scope', async () => {
  precondition();
  // PIDs above pid_max never exist.
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  const scope = await disableSwap(pidMax + 1);
  assert.equal(scope.swapDisabled, false);
  assert.equal(scope.scopePath, null);
  assert.equal(scope.warnings.length, 1);
  assert.match(scope.warnings[0]!, /could not move PID/);
  assert.deepEqual(ourScopesLeft([pidMax + 1]), []);
});

test('no memory controller: a warning and nothing created', async () => {
  const scope = await disableSwap(process.pid, { hierarchy: null });
  assert.equal(scope.swapDisabled, false);
  assert.equal(scope.cgroupVersion, null);
  assert.match(scope.warnings[0]!, /no memory cgroup controller/);
  await scope.release();
});

test('the sweep removes empty scopes of dead VMMs and keeps those of live ones', async () => {
  precondition();
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  const stale = path.join(slicePath, scopeName(pidMax + 7));
  mkdirSync(stale, { recursive: true });
  const child = await spawnSleeper();
  const live = await disableSwap(child.pid!);
  scopes.push(live);
  try {
    const removed = await sweepStaleSwapScopes();
    assert.ok(removed.includes(stale), `swept: ${removed.join(', ')}`);
    assert.equal(existsSync(stale), false);
    assert.equal(existsSync(live.scopePath!), true, 'a live VMM keeps its scope');
  } finally {
    await killAndWait(child);
    await live.release();
    if (existsSync(stale)) rmdirSync(stale);
  }
  assert.deepEqual(ourScopesLeft([pidMax + 7, child.pid!]), []);
});
