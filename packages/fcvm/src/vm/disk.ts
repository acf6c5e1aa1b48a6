/**
 * Per-VM copy-on-write root disks. The base image (an asset) is never written.
 * - qcow2 overlay backed by the raw base, for backends that read qcow2 (QEMU): instant, tiny;
 * - FICLONE reflink where the filesystem supports it (btrfs, xfs): instant, shares extents;
 * - otherwise a sparse copy, with a warning, since it costs time and space.
 */
import { chmodSync, constants, copyFileSync } from 'node:fs';
import { FcvmError } from '../errors.js';
import { log } from '../log.js';
import { run } from '../util/subprocess.js';

export type CowDiskKind = 'qcow2-overlay' | 'reflink' | 'sparse-copy';

export async function createCowDisk(
  base: string,
  target: string,
  options: { qcow2: boolean; baseFormat?: 'raw' | 'qcow2' },
): Promise<{ path: string; kind: CowDiskKind; format: 'raw' | 'qcow2' }> {
  if (options.qcow2) {
    const baseFormat = options.baseFormat ?? 'raw';
    try {
      await run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', baseFormat, target], {
        timeoutMs: 60_000,
      });
    } catch (err) {
      throw new FcvmError(
        'HYPERVISOR',
        `Could not create the copy-on-write disk ${target}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return { path: target, kind: 'qcow2-overlay', format: 'qcow2' };
  }
  try {
    copyFileSync(base, target, constants.COPYFILE_FICLONE_FORCE);
    return { path: target, kind: 'reflink', format: 'raw' };
  } catch {
    log.warn(`the data directory does not support reflinks (use btrfs or xfs): copying ${base}, which is slower`);
  }
  try {
    await run(['cp', '--sparse=always', '--', base, target], { timeoutMs: 600_000 });
  } catch (err) {
    throw new FcvmError('STATE', `Could not copy the root disk to ${target}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { path: target, kind: 'sparse-copy', format: 'raw' };
}

/**
 * A snapshot's copy of a VM's root disk, taken while the VM is paused (its writes are flushed). A
 * qcow2 overlay is copied as it is (small: only what the VM wrote; its backing file is immutable),
 * so clones chain base <- snapshot disk <- clone overlay. A raw disk is reflinked, else copied
 * sparsely with a warning.
 */
export async function copyDiskForSnapshot(source: string, target: string, format: 'raw' | 'qcow2'): Promise<void> {
  if (format === 'raw') {
    try {
      copyFileSync(source, target, constants.COPYFILE_FICLONE_FORCE);
      chmodSync(target, 0o600);
      return;
    } catch {
      log.warn('the data directory does not support reflinks (use btrfs or xfs): copying the root disk sparsely');
    }
  }
  try {
    await run(['cp', '--reflink=auto', '--sparse=always', '--', source, target], { timeoutMs: 600_000 });
    chmodSync(target, 0o600);
  } catch (err) {
    throw new FcvmError('STATE', `Could not copy the root disk to ${target}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
