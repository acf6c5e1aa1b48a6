/**
 * The data directory and its layout (docs/ARCHITECTURE.md, "Data directory"):
 *
 *   <data>/assets/            content-addressed, immutable once published (kernel, initrd, rootfs, images)
 *   <data>/vms/<vm_id>/        one per running VM: CoW disk, sockets, console log; removed on teardown
 *   <data>/snapshots/<name>/   snapshot files (memory, device state, disk, metadata)
 *   <data>/state/<vm_id>.json  registry records, one per fcvm process; state/registry.lock guards them
 *   <data>/logs/               logs kept after a VM ends (the last runs of each VM name)
 *   <data>/tmp/                scratch for builds; anything here belongs to a live or a dead build
 *
 * `FCVM_DATA_DIR` wins, then the config's `data_dir`, then `/var/lib/fcvm` for root and
 * `$XDG_DATA_HOME/fcvm` (else `~/.local/share/fcvm`) for everyone else.
 */
import { mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { FcvmError } from './errors.js';

export interface DataDir {
  readonly root: string;
  readonly assets: string;
  readonly vms: string;
  readonly snapshots: string;
  readonly state: string;
  readonly logs: string;
  readonly tmp: string;
  vmDir(vmId: string): string;
  snapshotDir(name: string): string;
}

export function defaultDataDirRoot(env: NodeJS.ProcessEnv = process.env, configured?: string): string {
  if (env.FCVM_DATA_DIR) return env.FCVM_DATA_DIR;
  if (configured) return configured;
  if (process.getuid?.() === 0) return '/var/lib/fcvm';
  const xdg = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share');
  return join(xdg, 'fcvm');
}

/**
 * Refuses a data directory that cannot be one: the path, or the nearest part of it that exists, is
 * not a directory. (Without this check the first mkdir fails with a bare ENOTDIR.)
 */
export function checkDataDirRoot(root: string): void {
  for (let path = root; ; path = dirname(path)) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch {
      if (dirname(path) === path) return;
      continue; // does not exist yet: fcvm creates it
    }
    if (isDirectory) return;
    const where = path === root ? `${root} is a file` : `${path}, part of ${root}, is a file`;
    throw new FcvmError(
      'CONFIG',
      `The data directory cannot be used: ${where}. Point FCVM_DATA_DIR (or data_dir in the config) at a directory.`,
    );
  }
}

export function dataDir(root: string): DataDir {
  return {
    root,
    assets: join(root, 'assets'),
    vms: join(root, 'vms'),
    snapshots: join(root, 'snapshots'),
    state: join(root, 'state'),
    logs: join(root, 'logs'),
    tmp: join(root, 'tmp'),
    vmDir: (vmId) => join(root, 'vms', vmId),
    snapshotDir: (name) => join(root, 'snapshots', name),
  };
}

/** Creates the directories. 0700: guest memory and sockets live below. */
export function ensureDataDir(dir: DataDir): void {
  for (const path of [dir.root, dir.assets, dir.vms, dir.snapshots, dir.state, dir.logs, dir.tmp]) {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  }
}
