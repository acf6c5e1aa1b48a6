/** The snapshots stored under `<data>/snapshots/`: listing, lookup and deletion. */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DataDir } from '../data-dir.js';
import { errnoCode, FcvmError } from '../errors.js';
import { lockFile, tryLockFile } from '../sys/flock.js';
import { SNAPSHOT_METADATA_FILE, type SnapshotMetadata, SnapshotMetadataSchema } from './metadata.js';

export interface StoredSnapshot {
  readonly name: string;
  readonly dir: string;
  /** Undefined when the directory holds no valid metadata (an interrupted create). */
  readonly metadata: SnapshotMetadata | undefined;
  readonly complete: boolean;
  /** Bytes allocated on disk (sparse files count what they use). */
  readonly diskUsage: number;
}

/** A create of the same name holds the lock while it writes memory (seconds to minutes for large VMs). */
const SNAPSHOT_LOCK_TIMEOUT_MS = 15 * 60_000;

/** Names that are work in progress of `snapshot create`, never snapshots themselves. */
const TRANSIENT = /\.(creating|old)$/;

function allocatedBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? allocatedBytes(path) : statSync(path).blocks * 512;
  }
  return total;
}

export function readSnapshot(dir: DataDir, name: string): StoredSnapshot | undefined {
  const path = dir.snapshotDir(name);
  if (!existsSync(path)) return undefined;
  let metadata: SnapshotMetadata | undefined;
  try {
    const parsed = SnapshotMetadataSchema.safeParse(
      JSON.parse(readFileSync(join(path, SNAPSHOT_METADATA_FILE), 'utf8')),
    );
    metadata = parsed.success ? parsed.data : undefined;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
  }
  const complete =
    metadata !== undefined &&
    Object.values(metadata.files).every((file) => typeof file === 'string' && existsSync(join(path, file)));
  return { name, dir: path, metadata, complete, diskUsage: allocatedBytes(path) };
}

export function listSnapshots(dir: DataDir): StoredSnapshot[] {
  let names: string[];
  try {
    names = readdirSync(dir.snapshots, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && !TRANSIENT.test(entry.name))
      .map((entry) => entry.name);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  return names
    .sort()
    .map((name) => readSnapshot(dir, name))
    .filter((s): s is StoredSnapshot => s !== undefined);
}

/**
 * Snapshots taken of clones of `name`: their disks are qcow2 overlays whose backing file is `name`'s
 * disk, so `name` must neither be deleted nor replaced while they exist.
 */
export function childrenOf(dir: DataDir, name: string): string[] {
  return listSnapshots(dir)
    .filter((s) => s.metadata?.parent === name)
    .map((s) => s.name);
}

export function refuseIfParent(dir: DataDir, name: string, action: string): void {
  const children = childrenOf(dir, name);
  if (children.length > 0) {
    throw new FcvmError(
      'USAGE',
      `Cannot ${action} snapshot ${name}: snapshot(s) ${children.join(', ')} were taken from its clones and use its disk; delete them first.`,
    );
  }
}

/** Removes `NAME.creating` directories whose create died (nobody holds the name's lock). */
export function sweepAbandonedCreates(dir: DataDir): void {
  let entries: string[];
  try {
    entries = readdirSync(dir.snapshots);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  for (const entry of entries.filter((e) => e.endsWith('.creating'))) {
    const lock = tryLockFile(join(dir.snapshots, `.${entry.slice(0, -'.creating'.length)}.lock`));
    if (lock === undefined) continue;
    try {
      rmSync(join(dir.snapshots, entry), { recursive: true, force: true });
    } finally {
      lock.release();
    }
  }
}

export function deleteSnapshot(dir: DataDir, name: string): void {
  if (!existsSync(dir.snapshotDir(name))) throw new FcvmError('NOT_FOUND', `There is no snapshot named ${name}.`);
  refuseIfParent(dir, name, 'delete');
  rmSync(dir.snapshotDir(name), { recursive: true, force: true });
}

/** Where `snapshot create` writes before it publishes: never listed, never restored. */
export function creatingDir(dir: DataDir, name: string): string {
  return `${dir.snapshotDir(name)}.creating`;
}

/**
 * Runs `work` holding the snapshot name's lock (`snapshots/.NAME.lock`, flock: released by the kernel
 * if the holder dies), so concurrent creates of one name run one after the other.
 */
export async function withSnapshotLock<T>(dir: DataDir, name: string, work: () => Promise<T>): Promise<T> {
  mkdirSync(dir.snapshots, { recursive: true, mode: 0o700 });
  const lock = await lockFile(join(dir.snapshots, `.${name}.lock`), { timeoutMs: SNAPSHOT_LOCK_TIMEOUT_MS });
  try {
    return await work();
  } finally {
    lock.release();
  }
}

/** Writes snapshot.json (0600) atomically into a snapshot directory: the last file a create writes. */
export function writeSnapshotMetadata(snapshotDir: string, metadata: SnapshotMetadata): void {
  const target = join(snapshotDir, SNAPSHOT_METADATA_FILE);
  const temporary = `${target}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(metadata, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(temporary, target);
}

/**
 * Publishes `NAME.creating` as `NAME` (call with the name's lock held): an older snapshot of that
 * name moves aside first and goes only once the new one is in place.
 */
export function publishSnapshot(dir: DataDir, name: string): void {
  const final = dir.snapshotDir(name);
  const old = `${final}.old`;
  rmSync(old, { recursive: true, force: true });
  const replacing = existsSync(final);
  if (replacing) renameSync(final, old);
  renameSync(creatingDir(dir, name), final);
  if (replacing) rmSync(old, { recursive: true, force: true });
}

/** A complete snapshot by name, or one clear error saying what is wrong with it. */
export function loadSnapshot(dir: DataDir, name: string): StoredSnapshot & { readonly metadata: SnapshotMetadata } {
  const stored = readSnapshot(dir, name);
  if (stored === undefined) {
    throw new FcvmError('NOT_FOUND', `There is no snapshot named ${name}; see fcvm snapshots ls.`);
  }
  if (stored.metadata === undefined) {
    throw new FcvmError(
      'STATE',
      `Snapshot ${name} has no readable metadata (${SNAPSHOT_METADATA_FILE} is missing or corrupt); delete it (fcvm snapshots delete ${name}) and create it again.`,
    );
  }
  if (!stored.complete) {
    throw new FcvmError(
      'STATE',
      `Snapshot ${name} is incomplete (a file it names is missing); delete it (fcvm snapshots delete ${name}) and create it again.`,
    );
  }
  return stored as StoredSnapshot & { readonly metadata: SnapshotMetadata };
}
