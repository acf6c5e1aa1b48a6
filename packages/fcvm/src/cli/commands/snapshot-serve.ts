import { Command } from 'commander';
import { notImplemented } from '../../errors.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName } from '../parse.js';

export function snapshotServeCommand(getContext: () => CliContext): Command {
  const command = new Command('serve')
    .description("serve a snapshot's memory to clones over userfaultfd; runs in the foreground and prints its PID")
    .argument('<snapshot>', 'snapshot name', (v) => parseName(v, 'snapshot name'));
  return defineAction(command, async (snapshot: string) => {
    void snapshot;
    void getContext;
    throw notImplemented('Serving snapshot memory (fcvm snapshot serve)');
  });
}
