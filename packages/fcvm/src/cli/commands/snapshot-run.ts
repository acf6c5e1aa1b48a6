import { Command, Option } from 'commander';
import { HYPERVISOR_CHOICES, type HypervisorChoice } from '../../config.js';
import { usageError } from '../../errors.js';
import { type CloneRequest, runClone } from '../../vm/clone.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName, parsePid } from '../parse.js';

export type SnapshotRunRequest = CloneRequest;

interface RawOptions {
  pid?: number;
  snapshot?: string;
  name?: string;
  exec?: string;
  dirtyTracking?: boolean;
  swap?: boolean;
  hypervisor: HypervisorChoice;
}

export function snapshotRunCommand(getContext: () => CliContext): Command {
  const command = new Command('run')
    .description(
      'start a clone from a snapshot: through a memory server (--pid) or from the snapshot file (--snapshot)',
    )
    .option('--pid <pid>', 'PID of a `fcvm snapshot serve` process', (v) => parsePid(v))
    .option('--snapshot <name>', 'restore straight from the snapshot files (no memory server)', (v) =>
      parseName(v, '--snapshot'),
    )
    .option('--name <name>', 'clone name (default: <snapshot>-<6 hex digits>)', (v) => parseName(v))
    .option('--exec <command>', 'run this command in the clone, print its output, then stop the clone')
    .option(
      '--no-dirty-tracking',
      'restore without dirty-page tracking (the clone cannot be the base of a diff snapshot)',
    )
    .option('--no-swap', "keep the clone's memory out of host swap (own cgroup scope; needs root)")
    .addOption(new Option('--hypervisor <kind>', 'VMM backend').choices(HYPERVISOR_CHOICES).default('auto'));
  return defineAction(command, async (raw: RawOptions) => {
    const request = toSnapshotRunRequest(raw);
    const context = getContext();
    return runClone(request, {
      dataDir: context.dataDir,
      config: context.config,
      registry: context.registry(),
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
    });
  });
}

export function toSnapshotRunRequest(raw: RawOptions): SnapshotRunRequest {
  if ((raw.pid === undefined) === (raw.snapshot === undefined)) {
    throw usageError('Say where the clone comes from: give --pid SERVE_PID or --snapshot NAME, not both.');
  }
  if (raw.exec !== undefined && raw.exec.trim() === '') throw usageError('Invalid --exec: the command is empty.');
  return {
    source: raw.pid !== undefined ? { servePid: raw.pid } : { snapshot: raw.snapshot as string },
    name: raw.name ?? null,
    exec: raw.exec ?? null,
    dirtyTracking: raw.dirtyTracking !== false,
    noSwap: raw.swap === false,
    hypervisor: raw.hypervisor,
  };
}
