/**
 * Guest RAM files. A VM that may be snapshotted keeps its RAM in a file mapped shared, so a snapshot
 * is that file (copied while the VM is paused) plus a small device-state stream. Clones map the copy
 * privately: they all read the same page-cache pages until they write, and never change the file.
 */
import { open, stat } from 'node:fs/promises';
import { errnoCode, FcvmError } from '../../errors.js';
import { run } from '../../util/subprocess.js';

export const MIB = 1024 * 1024;

/** Creates a sparse, zero-filled RAM file of `memoryMib`, mode 0600. Refuses to reuse an existing file. */
export async function createMemoryFile(path: string, memoryMib: number): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') {
      throw new FcvmError('STATE', `The guest memory file ${path} already exists; remove it or choose another path.`, {
        cause: err,
      });
    }
    throw err;
  }
  try {
    await handle.truncate(memoryMib * MIB);
  } finally {
    await handle.close();
  }
}

/**
 * Copies a RAM file for a snapshot: a reflink where the filesystem can (btrfs, xfs: instant, no
 * space), else a sparse copy (pages the guest never touched stay holes). coreutils `cp` does both,
 * seeking over holes, which Node's copyFile cannot.
 */
export async function copyMemoryFile(source: string, target: string): Promise<void> {
  try {
    await run(['cp', '--reflink=auto', '--sparse=always', '--', source, target], { timeoutMs: 300_000 });
  } catch (err) {
    throw new FcvmError('HYPERVISOR', `Could not copy guest memory to ${target}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** What a snapshot's memory file says about how to restore it. */
export type SavedMemory = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'in-vmstate' };

/**
 * A snapshot of a VM without a RAM file carries the RAM inside vmstate.bin and leaves memory.bin
 * empty (or absent); otherwise memory.bin must be exactly the guest's RAM size.
 */
export async function inspectSavedMemory(path: string, memoryMib: number): Promise<SavedMemory> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'in-vmstate' };
    throw err;
  }
  if (size === 0) return { kind: 'in-vmstate' };
  if (size !== memoryMib * MIB) {
    throw new FcvmError(
      'STATE',
      `The snapshot memory file ${path} holds ${size} bytes but the VM has ${memoryMib} MiB; restore with the snapshot's memory size.`,
    );
  }
  return { kind: 'file', path };
}
