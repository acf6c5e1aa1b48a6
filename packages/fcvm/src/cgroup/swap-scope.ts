/**
 * `--no-swap`: put a VMM process into its own cgroup scope, `fcvm.slice/fcvm-<pid>.scope`, in which
 * its memory (guest RAM) is never swapped out. One scope per VM, so the user's own cgroup (and with it
 * their shell and other programs) keeps its swap behaviour.
 *
 * - cgroup v2: the memory controller is enabled in the slice's `cgroup.subtree_control`, the scope
 *   gets `memory.swap.max=0`, and only then is the PID moved (so it is never in a scope that allows swap).
 * - cgroup v1 (memory controller on its own hierarchy): `memory.swappiness=0`, and where swap
 *   accounting exists `memory.memsw.limit_in_bytes` = the scope's memory limit (memory+swap may not
 *   exceed memory alone, i.e. no swap).
 *
 * Failures never stop a VM: `disableSwap` reports what it did and what it could not do as warnings.
 * `release()` removes the scope once the VMM has exited (the reference implementation never did, and
 * empty scopes piled up).
 */
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode } from '../errors.js';
import { log } from '../log.js';
import { isSameProcessAlive } from '../util/proc.js';
import { findMemoryHierarchy, type MemoryHierarchy } from './memory-hierarchy.js';

export const SLICE_NAME = 'fcvm.slice';

export function scopeName(pid: number): string {
  return `fcvm-${pid}.scope`;
}

export interface SwapScope {
  readonly pid: number;
  /** cgroup version the scope lives on; null when the host has no memory controller. */
  readonly cgroupVersion: 1 | 2 | null;
  /** Absolute path of the scope directory while it exists; null if none was created. */
  readonly scopePath: string | null;
  /** True when the PID sits in the scope and the scope's settings forbid swapping. */
  readonly swapDisabled: boolean;
  /** The settings written, as `file=value`. */
  readonly applied: readonly string[];
  /** What did not work, one sentence each (the caller logs them). */
  readonly warnings: readonly string[];
  /** Moves any PIDs still in the scope back to the hierarchy root and removes the scope. Idempotent, never throws. */
  release(): Promise<void>;
}

export interface DisableSwapOptions {
  /** Defaults to the host's hierarchy from /proc/self/mountinfo. */
  readonly hierarchy?: MemoryHierarchy | null;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `mkdir` of slice and scope; retried because a concurrent `release()` may remove an empty slice in between. */
async function createScopeDir(slicePath: string, scopePath: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(slicePath, { recursive: true });
    try {
      await mkdir(scopePath);
      return;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

/** Adds `controller` to a cgroup v2 directory's subtree_control unless it is there already. */
async function enableControllerForChildren(cgroupDir: string, controller: string): Promise<void> {
  const file = path.join(cgroupDir, 'cgroup.subtree_control');
  const enabled = (await readFile(file, 'utf8')).trim().split(/\s+/);
  if (!enabled.includes(controller)) await writeFile(file, `+${controller}`);
}

async function removeCgroupDir(dir: string): Promise<void> {
  // A process that has just exited can keep its cgroup busy for a moment (it is still being torn down).
  for (let attempt = 1; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 50) throw err;
      await sleep(20);
    }
  }
}

async function pidsIn(cgroupDir: string): Promise<number[]> {
  try {
    const text = await readFile(path.join(cgroupDir, 'cgroup.procs'), 'utf8');
    return text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map(Number);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
}

/** Removes a scope: remaining PIDs go back to the hierarchy root, then the scope and (if empty) the slice go. */
async function removeScope(hierarchy: MemoryHierarchy, scopePath: string): Promise<void> {
  for (const pid of await pidsIn(scopePath)) {
    try {
      await writeFile(path.join(hierarchy.mountPoint, 'cgroup.procs'), String(pid));
    } catch (err) {
      // ESRCH: it exited between the read and the move, which is what we wanted anyway.
      if (errnoCode(err) !== 'ESRCH') throw err;
    }
  }
  await removeCgroupDir(scopePath);
  await removeSliceIfEmpty(path.dirname(scopePath));
}

async function removeSliceIfEmpty(slicePath: string): Promise<void> {
  try {
    await rmdir(slicePath);
  } catch (err) {
    // Other VMs' scopes keep the slice (ENOTEMPTY/EBUSY); ENOENT: another release removed it.
    const code = errnoCode(err);
    if (code !== 'ENOTEMPTY' && code !== 'EBUSY' && code !== 'ENOENT') throw err;
  }
}

function releaser(hierarchy: MemoryHierarchy, scopePath: string, pid: number): () => Promise<void> {
  let releasing: Promise<void> | undefined;
  return () => {
    releasing ??= removeScope(hierarchy, scopePath).catch((err: unknown) => {
      log.warn(`Could not remove the no-swap cgroup scope ${scopePath} of PID ${pid}: ${describe(err)}`);
    });
    return releasing;
  };
}

const noRelease = async (): Promise<void> => {};

async function applyV2(scopePath: string, hierarchy: MemoryHierarchy, applied: string[]): Promise<void> {
  // The slice can only offer `memory` to its scopes when its parent offers it to the slice.
  await enableControllerForChildren(hierarchy.mountPoint, 'memory');
  await enableControllerForChildren(path.dirname(scopePath), 'memory');
  const swapMax = path.join(scopePath, 'memory.swap.max');
  if (!(await exists(swapMax))) {
    throw new Error('memory.swap.max does not exist (the kernel has no swap accounting)');
  }
  await writeFile(swapMax, '0');
  applied.push('memory.swap.max=0');
}

async function applyV1(scopePath: string, applied: string[], warnings: string[]): Promise<void> {
  await writeFile(path.join(scopePath, 'memory.swappiness'), '0');
  applied.push('memory.swappiness=0');
  const memsw = path.join(scopePath, 'memory.memsw.limit_in_bytes');
  if (!(await exists(memsw))) {
    warnings.push('Swap accounting is off (no memory.memsw.limit_in_bytes); only memory.swappiness=0 was set.');
    return;
  }
  const limit = (await readFile(path.join(scopePath, 'memory.limit_in_bytes'), 'utf8')).trim();
  await writeFile(memsw, limit);
  applied.push(`memory.memsw.limit_in_bytes=${limit}`);
}

/** Creates `fcvm.slice/fcvm-<pid>.scope` with swap disabled and moves `pid` into it. Never throws. */
export async function disableSwap(pid: number, options: DisableSwapOptions = {}): Promise<SwapScope> {
  const applied: string[] = [];
  const warnings: string[] = [];
  let hierarchy: MemoryHierarchy | null;
  try {
    hierarchy = options.hierarchy === undefined ? findMemoryHierarchy() : options.hierarchy;
  } catch (err) {
    warnings.push(`Could not find the memory cgroup hierarchy: ${describe(err)}.`);
    hierarchy = null;
  }
  if (hierarchy === null) {
    if (warnings.length === 0) warnings.push('This host has no memory cgroup controller, so swap stays enabled.');
    return { pid, cgroupVersion: null, scopePath: null, swapDisabled: false, applied, warnings, release: noRelease };
  }

  const scopePath = path.join(hierarchy.mountPoint, SLICE_NAME, scopeName(pid));
  const failed = (step: string, err: unknown): string =>
    `--no-swap: could not ${step} (${describe(err)}); the VM runs with swap enabled.`;
  try {
    await createScopeDir(path.dirname(scopePath), scopePath);
  } catch (err) {
    warnings.push(failed(`create the cgroup ${scopePath}`, err));
    return {
      pid,
      cgroupVersion: hierarchy.version,
      scopePath: null,
      swapDisabled: false,
      applied,
      warnings,
      release: noRelease,
    };
  }

  const release = releaser(hierarchy, scopePath, pid);
  try {
    if (hierarchy.version === 2) await applyV2(scopePath, hierarchy, applied);
    else await applyV1(scopePath, applied, warnings);
  } catch (err) {
    warnings.push(failed(`disable swap in ${scopePath}`, err));
    await release();
    return { pid, cgroupVersion: hierarchy.version, scopePath: null, swapDisabled: false, applied, warnings, release };
  }

  try {
    await writeFile(path.join(scopePath, 'cgroup.procs'), String(pid));
  } catch (err) {
    warnings.push(failed(`move PID ${pid} into ${scopePath}`, err));
    await release();
    return { pid, cgroupVersion: hierarchy.version, scopePath: null, swapDisabled: false, applied, warnings, release };
  }
  log.debug(`--no-swap: PID ${pid} moved into ${scopePath} (${applied.join(', ')})`);
  return { pid, cgroupVersion: hierarchy.version, scopePath, swapDisabled: true, applied, warnings, release };
}

/**
 * Removes the scopes of VMMs that are gone (their fcvm was killed before it could release them).
 * Only empty scopes of dead PIDs are touched. Never throws.
 */
export async function sweepStaleSwapScopes(
  hierarchy: MemoryHierarchy | null = findMemoryHierarchy(),
): Promise<string[]> {
  if (hierarchy === null) return [];
  const slicePath = path.join(hierarchy.mountPoint, SLICE_NAME);
  let entries: string[];
  try {
    entries = await readdir(slicePath);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') log.warn(`Could not list ${slicePath}: ${describe(err)}`);
    return [];
  }
  const removed: string[] = [];
  for (const entry of entries) {
    const match = /^fcvm-(\d+)\.scope$/.exec(entry);
    // A live PID may be a VMM whose scope is being set up right now (created, PID not yet moved).
    if (match === null || isSameProcessAlive(Number(match[1]))) continue;
    const scopePath = path.join(slicePath, entry);
    try {
      if ((await pidsIn(scopePath)).length > 0) continue;
      await rmdir(scopePath);
      removed.push(scopePath);
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'ENOENT' && code !== 'EBUSY') log.warn(`Could not remove ${scopePath}: ${describe(err)}`);
    }
  }
  if (removed.length > 0) {
    await removeSliceIfEmpty(slicePath).catch((err: unknown) => {
      log.warn(`Could not remove ${slicePath}: ${describe(err)}`);
    });
  }
  return removed;
}
