/**
 * Releases what an fcvm process that died without cleaning up (SIGKILL, crash, power loss) left
 * behind, given its swept registry record. Every step tolerates "already gone" and carries on.
 */
import { rmSync } from 'node:fs';
import type { DataDir } from '../data-dir.js';
import { errnoCode } from '../errors.js';
import { log } from '../log.js';
import type { VmRecord } from '../state/record.js';
import { isSameProcessAlive } from '../util/proc.js';

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
  rmSync(dir.vmDir(record.vm_id), { recursive: true, force: true });
  // A memory server (fcvm snapshot serve) killed without its shutdown leaves its socket behind.
  if (record.serve) rmSync(record.serve.socket_path, { force: true });
}
