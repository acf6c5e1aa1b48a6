import { Command, Option } from 'commander';
import { SNAPSHOT_TYPES, type SnapshotType } from '../../snapshot/metadata.js';
import { listSnapshots, type StoredSnapshot } from '../../snapshot/store.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { formatTable } from '../table.js';

export interface SnapshotFilter {
  readonly type?: SnapshotType;
  readonly image?: string;
}

export function filterSnapshots(snapshots: StoredSnapshot[], filter: SnapshotFilter): StoredSnapshot[] {
  return snapshots.filter(
    (s) =>
      (filter.type === undefined || s.metadata?.snapshot_type === filter.type) &&
      (filter.image === undefined || s.metadata?.image === filter.image),
  );
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function snapshotsLsCommand(getContext: () => CliContext): Command {
  const command = new Command('ls')
    .description('list snapshots stored on disk')
    .option('--json', 'print JSON on stdout')
    .addOption(
      new Option('--filter <type>', 'only user snapshots (snapshot create) or system ones (automatic cache)').choices(
        SNAPSHOT_TYPES,
      ),
    )
    .option('--image <image>', 'only snapshots of this image');
  return defineAction(command, (raw: { json?: boolean; filter?: SnapshotType; image?: string }) => {
    const snapshots = filterSnapshots(listSnapshots(getContext().dataDir), { type: raw.filter, image: raw.image });
    if (raw.json) {
      const out = snapshots.map((s) => ({
        name: s.name,
        dir: s.dir,
        complete: s.complete,
        disk_usage: s.diskUsage,
        metadata: s.metadata ?? null,
      }));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }
    const rows = snapshots.map((s) => [
      s.name,
      s.metadata?.snapshot_type ?? '-',
      s.metadata?.image ?? '-',
      s.metadata?.hypervisor ?? '-',
      s.metadata ? String(s.metadata.memory_mib) : '-',
      formatBytes(s.diskUsage),
      s.metadata?.created_at ?? '-',
      s.complete ? 'complete' : 'incomplete',
    ]);
    process.stdout.write(
      `${formatTable(['NAME', 'TYPE', 'IMAGE', 'HYPERVISOR', 'MEM(MB)', 'SIZE', 'CREATED', 'STATE'], rows)}\n`,
    );
    return 0;
  });
}
