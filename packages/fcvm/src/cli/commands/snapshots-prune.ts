import { Command } from 'commander';
import { notImplemented } from '../../errors.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';

export function snapshotsPruneCommand(getContext: () => CliContext): Command {
  const command = new Command('prune')
    .description('delete automatic (system) snapshots; --all also deletes user snapshots')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--all', 'include user snapshots')
    .option('--image <image>', 'only snapshots of this image');
  return defineAction(command, async () => {
    void getContext;
    throw notImplemented('Pruning snapshots (fcvm snapshots prune)');
  });
}
