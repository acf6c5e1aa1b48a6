/**
 * Releases what fcvm processes that died without cleaning up (SIGKILL, crash, power loss) left
 * behind: helper processes, VM directories, guest RAM files, cgroup scopes, bridged namespaces and
 * nftables tables (a rootless network dies with its holder process). Every command that looks
 * at the registry calls `sweepLeftovers` first. Every step tolerates "already gone" and carries on.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sweepStaleSwapScopes } from '../cgroup/swap-scope.js';
import type { DataDir } from '../data-dir.js';
import { errnoCode } from '../errors.js';
import { log } from '../log.js';
import { releaseNetworkLeftovers } from '../network/index.js';
import { sweepAbandonedCreates } from '../snapshot/store.js';
import type { VmRecord } from '../state/record.js';
import type { Registry } from '../state/registry.js';
import { isSameProcessAlive } from '../util/proc.js';

const SHM_DIR = '/dev/shm';

/**
 * Where a VM's RAM file lives: in /dev/shm when there is one, so the kernel never writes guest RAM
 * back to a disk while the VM runs (a shared file mapping on disk would be written back).
 */
export function guestRamPath(vmId: string, vmDir: string): string {
  return existsSync(SHM_DIR) ? join(SHM_DIR, `fcvm-${vmId}.ram`) : join(vmDir, 'memory.ram');
}

export function releaseLeftovers(record: VmRecord, dir: DataDir): void {
  for (const child of record.children) {
    if (!isSameProcessAlive(child.pid, child.start_time)) continue;
    try {
      process.kill(child.pid, 'SIGKILL');
      log.info(
        `ended ${child.role} process ${child.pid} left by dead fcvm ${record.pid} (${record.name ?? record.vm_id})`,
      );
    } catch (err) {
      if (errnoCode(err) !== 'ESRCH') log.warn(`could not end process ${child.pid}: ${(err as Error).message}`);
    }
  }
  const vmDir = dir.vmDir(record.vm_id);
  rmSync(guestRamPath(record.vm_id, vmDir), { force: true });
  rmSync(vmDir, { recursive: true, force: true });
  // A memory server (fcvm snapshot serve) killed without its shutdown leaves its socket behind.
  if (record.serve) rmSync(record.serve.socket_path, { force: true });
}

/** Sweeps stale registry records and releases what their owners left. */
export async function sweepLeftovers(registry: Registry, dir: DataDir): Promise<void> {
  sweepAbandonedCreates(dir);
  const stale = await registry.sweep();
  for (const record of stale) {
    releaseLeftovers(record, dir);
    await releaseNetworkLeftovers(record);
  }
  if (stale.length > 0) await sweepStaleSwapScopes();
}
