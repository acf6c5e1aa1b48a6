/**
 * Per-VM copy-on-write root disks. The base image (an asset) is never written.
 * - qcow2 overlay backed by the raw base, for backends that read qcow2 (QEMU): instant, tiny;
 * - FICLONE reflink where the filesystem supports it (btrfs, xfs): instant, shares extents;
 * - otherwise a sparse copy, with a warning, since it costs time and space.
 */
import { execFile } from 'node:child_process';
import { constants, copyFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { FcvmError } from '../errors.js';
import { log } from '../log.js';

const execFileAsync = promisify(execFile);

export type CowDiskKind = 'qcow2-overlay' | 'reflink' | 'sparse-copy';

export async function createCowDisk(
  base: string,
  target: string,
  options: { qcow2: boolean },
): Promise<{ path: string; kind: CowDiskKind; format: 'raw' | 'qcow2' }> {
  if (options.qcow2) {
    try {
      await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', target]);
    } catch (err) {
      throw new FcvmError('HYPERVISOR', `Could not create the copy-on-write disk ${target} (qemu-img create failed).`, {
        cause: err,
      });
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
    await execFileAsync('cp', ['--sparse=always', base, target]);
  } catch (err) {
    throw new FcvmError('STATE', `Could not copy the root disk to ${target}.`, { cause: err });
  }
  return { path: target, kind: 'sparse-copy', format: 'raw' };
}
