/** The snapshots stored under `<data>/snapshots/`: listing, lookup and deletion. */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { DataDir } from '../data-dir.js';
import { errnoCode, FcvmError } from '../errors.js';
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

export function deleteSnapshot(dir: DataDir, name: string): void {
  if (!existsSync(dir.snapshotDir(name))) throw new FcvmError('NOT_FOUND', `There is no snapshot named ${name}.`);
  rmSync(dir.snapshotDir(name), { recursive: true, force: true });
}
