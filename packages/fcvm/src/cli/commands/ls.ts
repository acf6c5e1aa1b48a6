import { Command } from 'commander';
import type { VmRecord } from '../../state/record.js';
import { sweepLeftovers } from '../../vm/leftovers.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parsePid } from '../parse.js';
import { formatTable } from '../table.js';

export function lsCommand(getContext: () => CliContext): Command {
  const command = new Command('ls')
    .description('list VMs, memory servers and clones that are running')
    .option('--json', 'print the full records as JSON on stdout')
    .option('--pid <pid>', 'only the record of this fcvm process', (v) => parsePid(v));
  return defineAction(command, async (raw: { json?: boolean; pid?: number }) => {
    const context = getContext();
    const registry = context.registry();
    await sweepLeftovers(registry, context.dataDir);
    const records = registry.live().filter((r) => raw.pid === undefined || r.pid === raw.pid);
    if (raw.json) {
      process.stdout.write(`${JSON.stringify(records, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`${formatTable(LS_HEADERS, records.map(lsRow))}\n`);
    return 0;
  });
}

const LS_HEADERS = ['NAME', 'PID', 'TYPE', 'STATUS', 'HEALTH', 'HOST_ADDR', 'GUEST_IP', 'IMAGE', 'MEM(MB)'];

function lsRow(record: VmRecord): string[] {
  const network = record.config.network;
  return [
    record.name ?? '-',
    String(record.pid),
    record.config.process_type,
    record.status,
    record.health_status,
    network.loopback_ip ?? network.host_ip ?? '-',
    network.guest_ip ?? '-',
    record.config.image ?? record.config.snapshot_name ?? '-',
    record.config.memory_mib === null ? '-' : String(record.config.memory_mib),
  ];
}
