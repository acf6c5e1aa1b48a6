import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { FcvmError } from '../../errors.js';
import { deleteSnapshot, listSnapshots } from '../../snapshot/store.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { snapshotUsers } from './snapshots-delete.js';
import { filterSnapshots, formatBytes } from './snapshots-ls.js';

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function snapshotsPruneCommand(getContext: () => CliContext): Command {
  const command = new Command('prune')
    .description('delete automatic (system) snapshots; --all also deletes user snapshots; snapshots in use are kept')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--all', 'include user snapshots')
    .option('--image <image>', 'only snapshots of this image');
  return defineAction(command, async (raw: { force?: boolean; all?: boolean; image?: string }) => {
    const context = getContext();
    const candidates = filterSnapshots(listSnapshots(context.dataDir), {
      type: raw.all ? undefined : 'system',
      image: raw.image,
    });
    const victims = [];
    for (const snapshot of candidates) {
      const users = await snapshotUsers(context.registry(), snapshot.name);
      if (users.length > 0) process.stderr.write(`keeping ${snapshot.name}: in use by ${users.join(', ')}\n`);
      else victims.push(snapshot);
    }
    if (victims.length === 0) {
      process.stderr.write('nothing to prune\n');
      return 0;
    }
    const total = formatBytes(victims.reduce((sum, s) => sum + s.diskUsage, 0));
    if (!raw.force) {
      if (!process.stdin.isTTY) {
        throw new FcvmError(
          'USAGE',
          `Pruning would delete ${victims.length} snapshot(s) (${total}); add --force to confirm.`,
        );
      }
      if (
        !(await confirm(
          `Delete ${victims.length} snapshot(s) (${total}): ${victims.map((v) => v.name).join(', ')}? [y/N] `,
        ))
      ) {
        return 1;
      }
    }
    for (const snapshot of victims) deleteSnapshot(context.dataDir, snapshot.name);
    process.stderr.write(`deleted ${victims.length} snapshot(s), ${total}\n`);
    return 0;
  });
}
