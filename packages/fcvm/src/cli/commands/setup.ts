import { Command } from 'commander';
import { notImplemented } from '../../errors.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';

export function setupCommand(getContext: () => CliContext): Command {
  const command = new Command('setup')
    .description('build the kernel, initramfs, root filesystem and test image that VMs need (once; content-addressed)')
    .option('--force', 'rebuild every asset even if it is present')
    .option('--check', 'only report which assets are present or missing')
    .option('--json', 'with --check: print JSON on stdout');
  return defineAction(command, async () => {
    void getContext;
    throw notImplemented('Building VM assets (fcvm setup)');
  });
}
