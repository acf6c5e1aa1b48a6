import { Command } from 'commander';
import { usageError } from '../../errors.js';
import { requestSnapshot } from '../../vm/snapshot-create.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName, parsePid } from '../parse.js';

export function snapshotCreateCommand(getContext: () => CliContext): Command {
  const command = new Command('create')
    .description('snapshot a running VM (memory, device state and disk); the VM keeps running')
    .argument('[name]', 'name of the VM to snapshot', (v) => parseName(v, 'VM name'))
    .option('--pid <pid>', 'VM to snapshot, by the PID of its fcvm process', (v) => parsePid(v))
    .option('--tag <tag>', 'snapshot name (default: the VM name)', (v) => parseName(v, '--tag'));
  return defineAction(command, async (name: string | undefined, raw: { pid?: number; tag?: string }) => {
    if ((name === undefined) === (raw.pid === undefined))
      throw usageError('Say which VM: give its name or --pid PID, not both.');
    const context = getContext();
    const created = await requestSnapshot(
      { target: raw.pid !== undefined ? { pid: raw.pid } : { name: name as string }, tag: raw.tag ?? null },
      { dataDir: context.dataDir, registry: context.registry() },
    );
    process.stdout.write(`${created}\n`);
    return 0;
  });
}
