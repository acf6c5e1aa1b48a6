import { Command } from 'commander';
import { sweepLeftovers } from '../../vm/leftovers.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { formatTable } from '../table.js';

export function snapshotLsCommand(getContext: () => CliContext): Command {
  const command = new Command('ls')
    .description('list running memory servers (fcvm snapshot serve) and their clones')
    .option('--json', 'print the full records as JSON on stdout');
  return defineAction(command, async (raw: { json?: boolean }) => {
    const registry = getContext().registry();
    await sweepLeftovers(registry, getContext().dataDir);
    const live = registry.live();
    const servers = live.filter((r) => r.config.process_type === 'serve');
    if (raw.json) {
      process.stdout.write(`${JSON.stringify(servers, null, 2)}\n`);
      return 0;
    }
    const rows = servers.map((server) => [
      server.vm_id,
      String(server.pid),
      server.health_status,
      server.config.snapshot_name ?? '-',
      String(live.filter((r) => r.config.process_type === 'clone' && r.config.serve_pid === server.pid).length),
    ]);
    process.stdout.write(`${formatTable(['SERVE_ID', 'PID', 'HEALTH', 'SNAPSHOT', 'CLONES'], rows)}\n`);
    return 0;
  });
}
