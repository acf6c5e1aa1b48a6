/**
 * Content-addressed asset store under `<data>/assets`.
 *
 * Every asset name carries a hash of everything that went into it (`inputHash`), so an asset that
 * exists is the right one and is never rebuilt. Builds happen in `<data>/tmp/build-<pid>-<start>-<rand>/`
 * and an asset appears under its final name only by rename(2) once it is complete: an interrupted
 * build leaves at most a scratch directory, which the next build removes once its owner is dead.
 * One build at a time per data dir (`<data>/tmp/setup.lock`, flock: released when the holder dies).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DataDir } from '../data-dir.js';
import { FcvmError } from '../errors.js';
import { type FileLock, lockFile, tryLockFile } from '../sys/flock.js';
import { isSameProcessAlive, processStartTime } from '../util/proc.js';
import { findHostTool, runTool } from './host-tools.js';

/** Hex digits of the input hash kept in asset names: 64 bits, plenty for a handful of assets. */
const NAME_HASH_LENGTH = 16;

/** JSON with object keys sorted at every level, so equal inputs always hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(v).sort()) sorted[key] = (v as Record<string, unknown>)[key];
    return sorted;
  });
}

/** The short hash that goes into an asset's name. */
export function inputHash(inputs: unknown): string {
  return createHash('sha256').update(canonicalJson(inputs)).digest('hex').slice(0, NAME_HASH_LENGTH);
}

export function sha256OfFile(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function sha256OfText(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

export function assetExists(path: string): boolean {
  return existsSync(path);
}

/** A scratch directory owned by this process. */
export interface BuildDir {
  readonly path: string;
  /** Removes the directory (and anything mounted below it). */
  dispose(): Promise<void>;
}

const BUILD_DIR_PATTERN = /^build-(\d+)-(\d+)-[0-9a-f]+$/;

export async function createBuildDir(dir: DataDir): Promise<BuildDir> {
  await mkdir(dir.tmp, { recursive: true, mode: 0o700 });
  const start = processStartTime(process.pid) ?? 0;
  const path = join(dir.tmp, `build-${process.pid}-${start}-${randomBytes(4).toString('hex')}`);
  await mkdir(path, { mode: 0o700 });
  return { path, dispose: () => removeTree(path) };
}

/**
 * Removes scratch directories whose builder is dead (PID gone or reused). Returns what it removed.
 * Call it while holding the build lock.
 */
export async function sweepStaleBuildDirs(dir: DataDir): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir.tmp);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of entries) {
    const match = BUILD_DIR_PATTERN.exec(name);
    if (!match) continue;
    if (isSameProcessAlive(Number(match[1]), Number(match[2]))) continue;
    const path = join(dir.tmp, name);
    await removeTree(path);
    removed.push(path);
  }
  return removed;
}

/** Mount points at or below `root`, deepest first (from /proc/self/mountinfo). */
export function mountsBelow(root: string, mountinfo?: string): string[] {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return [];
    }
  }
  const base = resolve(root);
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mountPoint = field.replace(/\\([0-7]{3})/g, (_m, octal: string) =>
      String.fromCharCode(Number.parseInt(octal, 8)),
    );
    if (mountPoint === base || mountPoint.startsWith(`${base}/`)) found.push(mountPoint);
  }
  return found.sort((a, b) => b.length - a.length);
}

/**
 * rm -rf that never descends into a mounted file system: a builder killed inside mmdebstrap may
 * leave /proc, /sys or /dev mounted in its chroot, and deleting through those would hurt the host.
 */
export async function removeTree(path: string): Promise<void> {
  const mounts = mountsBelow(path);
  if (mounts.length > 0) {
    const umount = findHostTool('umount');
    if (umount === undefined) {
      throw new FcvmError(
        'ASSET_BUILD',
        `Cannot remove ${path}: file systems are mounted below it and umount is missing.`,
      );
    }
    for (const mountPoint of mounts) await runTool([umount, '--lazy', mountPoint]);
    if (mountsBelow(path).length > 0) {
      throw new FcvmError('ASSET_BUILD', `Cannot remove ${path}: file systems are still mounted below it.`);
    }
  }
  await rm(path, { recursive: true, force: true });
}

/**
 * Moves a finished build output to its final asset path with rename(2). An existing asset (only
 * with --force) is first moved into the build dir, so readers see either the old or the new one.
 */
export async function publish(builtPath: string, assetPath: string, build: BuildDir): Promise<void> {
  await mkdir(join(assetPath, '..'), { recursive: true, mode: 0o700 });
  if (lstatSync(builtPath).isFile()) {
    // On disk before its name appears: a crash must not leave a complete-looking but empty asset.
    const handle = await open(builtPath, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  if (existsSync(assetPath) && lstatSync(assetPath).isDirectory()) {
    await rename(assetPath, join(build.path, `replaced-${randomBytes(4).toString('hex')}`));
  }
  await rename(builtPath, assetPath);
}

/**
 * Serialises builds per data dir; waits (up to `timeoutMs`) for a concurrent `fcvm setup`, calling
 * `onWait` once if it has to.
 */
export async function acquireBuildLock(
  dir: DataDir,
  options: { timeoutMs?: number; onWait?: () => void } = {},
): Promise<FileLock> {
  mkdirSync(dir.tmp, { recursive: true, mode: 0o700 });
  const path = join(dir.tmp, 'setup.lock');
  const immediate = tryLockFile(path);
  if (immediate) return immediate;
  options.onWait?.();
  try {
    return await lockFile(path, { timeoutMs: options.timeoutMs ?? 30 * 60_000 });
  } catch (err) {
    throw new FcvmError('ASSET_BUILD', `Another fcvm setup has been building assets in ${dir.root} for too long.`, {
      cause: err,
    });
  }
}
