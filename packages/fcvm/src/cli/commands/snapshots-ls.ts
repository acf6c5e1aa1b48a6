import { Command, Option } from 'commander';
import { notImplemented } from '../../errors.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';

export function snapshotsLsCommand(getContext: () => CliContext): Command {
  const command = new Command('ls')
    .description('list snapshots stored on disk')
    .option('--json', 'print JSON on stdout')
    .addOption(
      new Option('--filter <type>', 'only user snapshots (snapshot create) or system ones (automatic cache)').choices([
        'user',
        'system',
      ]),
    )
    .option('--image <image>', 'only snapshots of this image');
  return defineAction(command, async () => {
    void getContext;
    throw notImplemented('Listing stored snapshots (fcvm snapshots ls)');
  });
}
