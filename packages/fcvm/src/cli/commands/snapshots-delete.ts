import { Command } from 'commander';
import { notImplemented } from '../../errors.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName } from '../parse.js';

export function snapshotsDeleteCommand(getContext: () => CliContext): Command {
  const command = new Command('delete')
    .description('delete a stored snapshot')
    .argument('<name>', 'snapshot name', (v) => parseName(v, 'snapshot name'))
    .option('-f, --force', 'delete even if a memory server or clone uses it');
  return defineAction(command, async () => {
    void getContext;
    throw notImplemented('Deleting snapshots (fcvm snapshots delete)');
  });
}
