import { Command } from 'commander';
import { FcvmError } from '../../errors.js';
import { deleteSnapshot } from '../../snapshot/store.js';
import type { Registry } from '../../state/registry.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName } from '../parse.js';

/** Live memory servers and clones that use the snapshot. */
export async function snapshotUsers(registry: Registry, name: string): Promise<string[]> {
  await registry.sweep();
  return registry
    .live()
    .filter((r) => r.config.snapshot_name === name && r.config.process_type !== 'vm')
    .map((r) => `${r.config.process_type} ${r.name ?? r.vm_id} (pid ${r.pid})`);
}

export function snapshotsDeleteCommand(getContext: () => CliContext): Command {
  const command = new Command('delete')
    .description('delete a stored snapshot')
    .argument('<name>', 'snapshot name', (v) => parseName(v, 'snapshot name'))
    .option('-f, --force', 'delete even if a memory server or clone uses it');
  return defineAction(command, async (name: string, raw: { force?: boolean }) => {
    const context = getContext();
    const users = await snapshotUsers(context.registry(), name);
    if (users.length > 0 && !raw.force) {
      throw new FcvmError(
        'USAGE',
        `Snapshot ${name} is in use by ${users.join(', ')}; stop them first or use --force.`,
      );
    }
    deleteSnapshot(context.dataDir, name);
    process.stderr.write(`deleted snapshot ${name}\n`);
    return 0;
  });
}
