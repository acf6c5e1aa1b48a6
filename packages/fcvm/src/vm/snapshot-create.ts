/**
 * `fcvm snapshot create`. The fcvm process that runs a VM holds its VMM and its one agent channel, so
 * the snapshot is taken by that process: `requestSnapshot` (the CLI side) asks it over the VM's relay
 * socket (host route, agent/agent-relay.ts) and `createSnapshot` (the owner side) does the work:
 *
 *   name lock (flock) -> NAME.creating/ (0700) -> space check -> pause -> device state + memory
 *   -> root disk copy -> resume (always, also on failure) -> initrd, token, snapshot.json (0600)
 *   -> rename to NAME
 *
 * A failure removes NAME.creating; NAME (an older snapshot of that name) is replaced only at the end.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statfsSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { AgentClient, RelayHostRoute } from '../agent/index.js';
import type { DataDir } from '../data-dir.js';
import { FcvmError, usageError } from '../errors.js';
import type { VmHandle } from '../hypervisor/types.js';
import { log } from '../log.js';
import type { SnapshotMetadata } from '../snapshot/metadata.js';
import {
  creatingDir,
  publishSnapshot,
  refuseIfParent,
  withSnapshotLock,
  writeSnapshotMetadata,
} from '../snapshot/store.js';
import type { Registry } from '../state/registry.js';
import { copyDiskForSnapshot } from './disk.js';
import { findVm } from './exec.js';
import { type BootFacts, RELAY_SOCKET_NAME, RELAY_TOKEN_NAME } from './launch.js';
import { sweepLeftovers } from './leftovers.js';

const MIB = 1024 * 1024;
/** Writing memory of a large VM to a slow disk takes minutes; the CLI waits that long for the owner. */
const CREATE_TIMEOUT_MS = 15 * 60_000;
/** Device state is small (under 1 MiB); the rest is slack. */
const VMSTATE_RESERVE_BYTES = 64 * MIB;
const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$/;

/** What the owner knows about its VM that a snapshot must keep. */
export interface SnapshotSource {
  readonly vm: VmHandle;
  /** The owner's agent session: its liveness watch is suspended while the VM is paused on purpose. */
  readonly agent: Pick<AgentClient, 'suspendLiveness'>;
  readonly vmId: string;
  readonly vmName: string;
  readonly boot: BootFacts;
  /** The guest RAM file (shared mapping), if the VM has one: its allocation sizes the copy. */
  readonly ramPath: string | null;
  readonly vcpus: number;
  readonly memoryMib: number;
  readonly hugepages: boolean;
  readonly image: string | null;
  readonly container: SnapshotMetadata['container'];
  readonly network: SnapshotMetadata['network'];
  /** The snapshot this VM was cloned from (null for a booted VM). */
  readonly parent: string | null;
  readonly assets: Record<string, string>;
}

const requestSchema = z.object({ name: z.string().regex(NAME_PATTERN) });

/** The owner's handler of the relay's snapshot route. */
export function snapshotRoute(dataDir: DataDir, source: SnapshotSource): (body: unknown) => Promise<unknown> {
  return async (body) => {
    const parsed = requestSchema.safeParse(body);
    if (!parsed.success) throw usageError('Invalid snapshot name: use letters, digits, _ and -.');
    return createSnapshot(dataDir, source, parsed.data.name);
  };
}

export async function createSnapshot(
  dataDir: DataDir,
  source: SnapshotSource,
  name: string,
): Promise<{ name: string; dir: string }> {
  const writable = source.boot.disks.slice(1).filter((disk) => !disk.readOnly);
  if (writable.length > 0) {
    throw usageError(
      `VM ${source.vmName} has a writable extra disk (${writable.map((d) => d.id).join(', ')}); its content would diverge between clones, so it cannot be snapshotted.`,
    );
  }
  return withSnapshotLock(dataDir, name, async () => {
    const work = creatingDir(dataDir, name);
    // Left by a create that died while holding this lock; we hold it now, so nobody is writing it.
    rmSync(work, { recursive: true, force: true });
    refuseIfParent(dataDir, name, 'replace');
    mkdirSync(work, { mode: 0o700 });
    try {
      const started = Date.now();
      checkFreeSpace(dataDir, source, name);
      const files = await captureWhilePaused(source, work);
      writeRest(dataDir, source, name, work, files);
      publishSnapshot(dataDir, name);
      log.info(`snapshot ${name} of VM ${source.vmName} created in ${Date.now() - started} ms`);
      return { name, dir: dataDir.snapshotDir(name) };
    } catch (err) {
      rmSync(work, { recursive: true, force: true });
      throw explainSpace(err, dataDir, name);
    }
  });
}

/** Pause, device state + memory, disk copy; the VM is resumed whatever happened. */
async function captureWhilePaused(
  source: SnapshotSource,
  work: string,
): Promise<{ memory: string; vmstate: string; disk: string; kind: 'full' | 'diff' }> {
  const rootDisk = source.boot.disks[0];
  if (rootDisk === undefined) throw new FcvmError('INTERNAL', `VM ${source.vmName} has no root disk.`);
  const diskFile = `disk.${rootDisk.format}`;
  const pausedAt = Date.now();
  const resumeLiveness = source.agent.suspendLiveness();
  try {
    await source.vm.pause();
    const files = await source.vm.snapshot({ dir: work, kind: 'full' });
    await copyDiskForSnapshot(rootDisk.path, join(work, diskFile), rootDisk.format);
    return {
      memory: basename(files.memoryPath),
      vmstate: basename(files.vmstatePath),
      disk: diskFile,
      kind: files.kind,
    };
  } finally {
    try {
      await source.vm.resume();
      log.info(`VM ${source.vmName} resumed after ${Date.now() - pausedAt} ms paused`);
    } catch (err) {
      log.warn(`VM ${source.vmName} could not be resumed after the snapshot: ${(err as Error).message}`);
    }
    resumeLiveness();
  }
}

function writeRest(
  dataDir: DataDir,
  source: SnapshotSource,
  name: string,
  work: string,
  files: { memory: string; vmstate: string; disk: string; kind: 'full' | 'diff' },
): void {
  const { boot } = source;
  let initrd: string | undefined;
  if (boot.initrdPath !== null) {
    initrd = 'initrd.img';
    copyFileSync(boot.initrdPath, join(work, initrd));
  }
  // The guest agent read this token at boot and keeps it in memory: every clone must present it.
  copyFileSync(join(dataDir.vmDir(source.vmId), RELAY_TOKEN_NAME), join(work, 'token'));
  const metadata: SnapshotMetadata = {
    schema_version: 1,
    name,
    snapshot_type: 'user',
    created_at: new Date().toISOString(),
    hypervisor: boot.hypervisor,
    source_vm_id: source.vmId,
    source_name: source.vmName,
    image: source.image,
    vcpus: source.vcpus,
    memory_mib: source.memoryMib,
    hugepages: source.hugepages,
    parent: source.parent,
    kind: files.kind,
    container: source.container,
    network: source.network,
    kernel_path: boot.kernelPath,
    assets: source.assets,
    extra_disks: boot.disks.slice(1).map((disk) => ({ id: disk.id, path: disk.path })),
    disk_format: boot.disks[0]?.format ?? 'raw',
    files: {
      memory: files.memory,
      vmstate: files.vmstate,
      disk: files.disk,
      ...(initrd === undefined ? {} : { initrd }),
      token: 'token',
    },
  };
  for (const file of [files.memory, files.vmstate, files.disk, initrd, 'token']) {
    if (file !== undefined) chmodSync(join(work, file), 0o600);
  }
  writeSnapshotMetadata(work, metadata);
}

/** Refuses before pausing when the memory and disk copies cannot fit. */
function checkFreeSpace(dataDir: DataDir, source: SnapshotSource, name: string): void {
  const allocated = (path: string | null | undefined): number =>
    path !== null && path !== undefined && existsSync(path) ? statSync(path).blocks * 512 : 0;
  // Without a RAM file (a clone maps its snapshot privately) the guest's RAM travels in the state stream.
  const memory = source.ramPath === null ? source.memoryMib * MIB : allocated(source.ramPath);
  const needed = memory + allocated(source.boot.disks[0]?.path) + VMSTATE_RESERVE_BYTES;
  const fs = statfsSync(dataDir.snapshots);
  const free = fs.bavail * fs.bsize;
  if (free < needed) {
    throw new FcvmError(
      'STATE',
      `Not enough space for snapshot ${name}: it needs about ${Math.ceil(needed / MIB)} MiB and ${dataDir.snapshots} has ${Math.floor(free / MIB)} MiB free; free some space or move the data directory (FCVM_DATA_DIR).`,
    );
  }
}

/** A write that ran out of space mid-way gets the same clear sentence as the up-front check. */
function explainSpace(err: unknown, dataDir: DataDir, name: string): unknown {
  const text = `${(err as Error).message ?? ''} ${String((err as { cause?: unknown }).cause ?? '')}`;
  if (!/ENOSPC|No space left/i.test(text)) return err;
  return new FcvmError(
    'STATE',
    `Not enough space for snapshot ${name} in ${dataDir.snapshots}: the disk filled up while writing it (nothing was published); free some space and try again.`,
    { cause: err },
  );
}

// ---------------------------------------------------------------------------------------------
// The CLI side

export interface SnapshotRequest {
  readonly target: { readonly name: string } | { readonly pid: number };
  readonly tag: string | null;
}

/** Asks the VM's owning fcvm process to snapshot it; returns the snapshot's name. */
export async function requestSnapshot(
  request: SnapshotRequest,
  env: { readonly dataDir: DataDir; readonly registry: Registry },
): Promise<string> {
  await sweepLeftovers(env.registry, env.dataDir);
  const record = findVm(env.registry, request.target);
  const name = request.tag ?? record.name;
  if (name === null) throw usageError('The VM has no name; give the snapshot one with --tag.');
  const vmDir = env.dataDir.vmDir(record.vm_id);
  const socketPath = join(vmDir, RELAY_SOCKET_NAME);
  if (record.status !== 'running' || !existsSync(socketPath)) {
    throw new FcvmError(
      'STATE',
      `VM ${record.name ?? record.vm_id} is not running yet (status ${record.status}); try again.`,
    );
  }
  const token = readFileSync(join(vmDir, RELAY_TOKEN_NAME), 'utf8');
  const client = await AgentClient.connect(connect(socketPath), { token, timeoutMs: 30_000 });
  try {
    await client.hostRequest(RelayHostRoute.Snapshot, { name }, CREATE_TIMEOUT_MS);
    return name;
  } finally {
    client.destroy();
  }
}
