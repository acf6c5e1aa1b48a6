/**
 * `fcvm snapshot run`: a clone of a snapshot, in the foreground like `podman run`. It shares the
 * boot's steps (vm/launch.ts) with a restore in place of the boot:
 *
 *   resolve the snapshot (--snapshot NAME, or the memory server --pid) -> VM dir + registry record
 *   (process type clone) -> CoW disk on the snapshot's disk -> VMM restore (memory file mapped
 *   copy-on-write, or served by the memory server where the backend can) -> agent hello with a new
 *   restore epoch, host entropy and the clone's hostname (the agent runs its restore sequence before
 *   it answers) -> relay -> `--exec` command, or attach to the container until it exits.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RelayHostRoute } from '../agent/index.js';
import type { HypervisorChoice } from '../config.js';
import { ensureDataDir } from '../data-dir.js';
import { FcvmError, isFcvmError, usageError } from '../errors.js';
import { decideTrackDirtyPages, logTrackDirtyPages } from '../hypervisor/policy.js';
import type { DiskSpec, MemorySource, VmHandle } from '../hypervisor/types.js';
import { log } from '../log.js';
import { guestDnsServers, type VmNetwork } from '../network/index.js';
import type { SnapshotMetadata } from '../snapshot/metadata.js';
import { loadSnapshot } from '../snapshot/store.js';
import type { VmRecord } from '../state/record.js';
import type { CleanupStack } from './cleanup-stack.js';
import { createCowDisk } from './disk.js';
import {
  adoptVmm,
  attachNetwork,
  type BootFacts,
  connectAndRelay,
  consoleDiagnostics,
  type PreparedVm,
  prepareVm,
} from './launch.js';
import { sweepLeftovers } from './leftovers.js';
import { inForeground, type RunEnvironment, superviseContainer } from './run.js';
import { snapshotRoute } from './snapshot-create.js';

export interface CloneRequest {
  readonly source: { readonly servePid: number } | { readonly snapshot: string };
  readonly name: string | null;
  readonly exec: string | null;
  readonly dirtyTracking: boolean;
  readonly noSwap: boolean;
  readonly hypervisor: HypervisorChoice;
}

/**
 * A restored guest answers within a second or two, even under TCG; ten TCG clones on two loaded cores
 * took over a minute (the restore sequence runs inside the hello), so the boot's bound applies.
 */
const CLONE_AGENT_DEADLINE_MS = 120_000;

interface ResolvedSource {
  readonly snapshot: string;
  readonly dir: string;
  readonly metadata: SnapshotMetadata;
  readonly server: VmRecord | null;
}

function resolveSource(request: CloneRequest, env: RunEnvironment): ResolvedSource {
  let server: VmRecord | null = null;
  let snapshot: string;
  if ('servePid' in request.source) {
    const pid = request.source.servePid;
    const record = env.registry.findByPid(pid);
    if (record === undefined) {
      throw new FcvmError(
        'NOT_FOUND',
        `No memory server runs as pid ${pid} (it may have exited); start one with fcvm snapshot serve NAME, see fcvm snapshot ls.`,
      );
    }
    if (record.config.process_type !== 'serve' || record.config.snapshot_name === null) {
      throw usageError(
        `fcvm pid ${pid} is a ${record.config.process_type === 'clone' ? 'clone' : 'VM'}, not a memory server; give --pid the PID printed by fcvm snapshot serve, or use --snapshot NAME.`,
      );
    }
    server = record;
    snapshot = record.config.snapshot_name;
  } else {
    snapshot = request.source.snapshot;
  }
  const stored = loadSnapshot(env.dataDir, snapshot);
  checkSnapshotFiles(snapshot, stored.dir, stored.metadata);
  return { snapshot, dir: stored.dir, metadata: stored.metadata, server };
}

/** Catches a truncated or swapped file before any VM resource exists. */
function checkSnapshotFiles(snapshot: string, dir: string, metadata: SnapshotMetadata): void {
  const memoryBytes = statSync(join(dir, metadata.files.memory)).size;
  const expected = metadata.memory_mib * 1024 * 1024;
  // An empty memory file means the RAM is inside the device-state stream (a snapshot of a clone).
  const problem =
    memoryBytes !== 0 && memoryBytes !== expected
      ? `its memory file holds ${memoryBytes} bytes instead of ${expected}`
      : statSync(join(dir, metadata.files.vmstate)).size === 0
        ? 'its device state file is empty'
        : null;
  if (problem !== null) {
    throw new FcvmError(
      'STATE',
      `Snapshot ${snapshot} is damaged (${problem}); delete it (fcvm snapshots delete ${snapshot}) and create it again.`,
    );
  }
}

export async function runClone(request: CloneRequest, env: RunEnvironment): Promise<number> {
  ensureDataDir(env.dataDir);
  await sweepLeftovers(env.registry, env.dataDir);
  const source = resolveSource(request, env);
  const { metadata } = source;
  if (request.hypervisor !== 'auto' && request.hypervisor !== metadata.hypervisor) {
    throw usageError(
      `Snapshot ${source.snapshot} was taken with ${metadata.hypervisor}; a clone must use the same backend (leave out --hypervisor).`,
    );
  }
  const name = request.name ?? `${source.snapshot}-${randomBytes(3).toString('hex')}`;
  const clash = env.registry.findByName(name)[0];
  if (clash) throw usageError(`A VM named ${name} is already running (fcvm pid ${clash.pid}); choose another --name.`);

  return inForeground(name, async (cleanup, signal) => {
    const timer = new StepTimer();
    const prepared = await prepareVm(
      env,
      {
        name,
        vcpus: metadata.vcpus,
        memoryMib: metadata.memory_mib,
        hugepages: metadata.hugepages,
        hypervisor: metadata.hypervisor,
        recordConfig: {
          image: metadata.image,
          process_type: 'clone',
          serve_pid: source.server?.pid ?? null,
          snapshot_name: source.snapshot,
          tty: metadata.container.tty,
          interactive: metadata.container.interactive,
          user: metadata.container.user,
        },
      },
      cleanup,
    );
    timer.lap('prepare');
    const { vm, boot } = await restoreClone(request, source, prepared, env, cleanup, signal, timer);
    const { agent, relay } = await connectAndRelay(
      vm,
      prepared.vmDir,
      boot.token,
      {
        deadlineMs: CLONE_AGENT_DEADLINE_MS,
        restoreEpoch: Date.now(),
        restore: { entropy: randomBytes(64).toString('hex'), hostname: name },
        diagnostics: consoleDiagnostics(prepared),
      },
      cleanup,
      signal,
    );
    timer.lap('agent restore + hello + relay');
    log.info(`clone ${name} (${prepared.vmId}) of snapshot ${source.snapshot} is up: ${timer.summary()}`);
    relay.handleHostRoute(
      RelayHostRoute.Snapshot,
      snapshotRoute(env.dataDir, {
        vm,
        agent,
        vmId: prepared.vmId,
        vmName: name,
        boot,
        ramPath: null,
        vcpus: metadata.vcpus,
        memoryMib: metadata.memory_mib,
        hugepages: metadata.hugepages,
        image: metadata.image,
        container: metadata.container,
        network: metadata.network,
        parent: source.snapshot,
        assets: metadata.assets,
      }),
    );
    await env.registry.update(prepared.vmId, (record) => ({ ...record, status: 'running', health_status: 'healthy' }));
    const launched = { ...prepared, vm, agent, cleanup };
    if (request.exec !== null) return execOnce(launched, request.exec, env);
    const exit = await superviseContainer(launched, { ...metadata.container, http: null }, env, signal);
    return exit.exitCode;
  });
}

/** CoW disk, then the VMM restored from the snapshot; both registered on the cleanup stack. */
async function restoreClone(
  request: CloneRequest,
  source: ResolvedSource,
  prepared: PreparedVm,
  env: RunEnvironment,
  cleanup: CleanupStack,
  signal: AbortSignal,
  timer: StepTimer,
): Promise<{ vm: VmHandle; boot: BootFacts }> {
  const { metadata } = source;
  const { hypervisor, vmId, vmDir } = prepared;
  if (hypervisor.kind !== metadata.hypervisor) {
    throw usageError(
      `Snapshot ${source.snapshot} was taken with ${metadata.hypervisor}, which is not usable here (${hypervisor.kind} is).`,
    );
  }
  const kernelPath = metadata.kernel_path;
  if (kernelPath === null || !existsSync(kernelPath)) {
    throw new FcvmError(
      'STATE',
      `The kernel snapshot ${source.snapshot} was taken with (${kernelPath}) is gone; recreate the snapshot.`,
    );
  }
  const qcow2 = hypervisor.capabilities.diskFormats.includes('qcow2');
  const rootDisk = await createCowDisk(
    join(source.dir, metadata.files.disk),
    join(vmDir, qcow2 ? 'rootfs.qcow2' : 'rootfs.raw'),
    { qcow2, baseFormat: metadata.disk_format },
  );
  timer.lap('disk');
  const network = await cloneNetwork(source, prepared, env, cleanup);
  timer.lap('network');
  const disks: DiskSpec[] = [
    { id: 'rootfs', path: rootDisk.path, readOnly: false, format: rootDisk.format },
    ...metadata.extra_disks.map((disk) => ({ id: disk.id, path: disk.path, readOnly: true, format: 'raw' as const })),
  ];
  const memory = memorySource(source, hypervisor.capabilities.uffdRestore, hypervisor.kind);
  const trackDirtyPages = decideTrackDirtyPages({
    hugepages: metadata.hugepages,
    forStartupSnapshotBase: false,
    noDirtyTracking: !request.dirtyTracking,
  });
  logTrackDirtyPages(trackDirtyPages, vmId);
  const initrdPath = metadata.files.initrd === undefined ? null : join(source.dir, metadata.files.initrd);
  signal.throwIfAborted();
  const vm = await restoreOrExplain(source.snapshot, () =>
    hypervisor.restore(
      {
        vmId,
        vmDir,
        kernelPath,
        initrdPath,
        bootArgs: 'quiet',
        vcpus: metadata.vcpus,
        memoryMib: metadata.memory_mib,
        hugepages: metadata.hugepages,
        disks,
        net: network?.tap ?? null,
        netnsPath: network?.netnsPath ?? null,
        metadata: null,
        consoleLogPath: prepared.consoleLogPath,
        noSwap: request.noSwap,
        vmstatePath: join(source.dir, metadata.files.vmstate),
        memory,
        trackDirtyPages,
        resume: true,
      },
      signal,
    ),
  );
  await adoptVmm(env.registry, prepared, vm, cleanup);
  timer.lap('VMM restore');
  const token = readFileSync(join(source.dir, metadata.files.token ?? 'token'), 'utf8').trim();
  return { vm, boot: { hypervisor: hypervisor.kind, kernelPath, initrdPath, token, disks } };
}

/**
 * The snapshot's network mode around the snapshot's guest identity (same address, gateway and MAC
 * inside the clone's own namespace), with a new host side: rootless gets its own loopback address
 * and the snapshot's published ports on it.
 */
async function cloneNetwork(
  source: ResolvedSource,
  prepared: PreparedVm,
  env: RunEnvironment,
  cleanup: CleanupStack,
): Promise<VmNetwork | null> {
  const { network } = source.metadata;
  if (network.mode === 'none' || network.guest === null) return null;
  const publish = network.port_mappings.map((port) => ({
    hostIp: null,
    hostPort: Number(port.host_port),
    guestPort: Number(port.guest_port),
    protocol: port.protocol === 'udp' ? ('udp' as const) : ('tcp' as const),
  }));
  return attachNetwork(
    env.registry,
    prepared.vmId,
    prepared.vmDir,
    { mode: network.mode, publish, dnsServers: guestDnsServers(env.config), clone: network.guest },
    cleanup,
  );
}

/** A VMM that cannot load the state most often means damaged snapshot files: say so. */
async function restoreOrExplain(snapshot: string, restore: () => Promise<VmHandle>): Promise<VmHandle> {
  try {
    return await restore();
  } catch (err) {
    if (!isFcvmError(err) || err.code !== 'HYPERVISOR') throw err;
    throw new FcvmError(
      'HYPERVISOR',
      `Could not restore snapshot ${snapshot}: ${err.message} If the snapshot files were changed or truncated, delete it (fcvm snapshots delete ${snapshot}) and create it again.`,
      { cause: err },
    );
  }
}

function memorySource(source: ResolvedSource, uffd: boolean, kind: string): MemorySource {
  const memoryFile = join(source.dir, source.metadata.files.memory);
  if (source.server === null) return { backend: 'file', path: memoryFile };
  const socketPath = source.server.serve?.socket_path;
  if (uffd && socketPath !== undefined) return { backend: 'uffd', socketPath };
  log.info(
    `the ${kind} backend maps the snapshot's memory file itself (copy-on-write); memory server ${source.server.pid} serves no pages to this clone, it only owns it (stopping the server stops the clone)`,
  );
  return { backend: 'file', path: memoryFile };
}

/** `--exec`: one command in the clone's container; its output to ours, its status as ours. */
async function execOnce(
  launched: { readonly agent: import('../agent/index.js').AgentClient },
  command: string,
  env: RunEnvironment,
): Promise<number> {
  const exit = await launched.agent.exec(
    { command: ['sh', '-c', command], inVm: false, interactive: false, env: {}, workdir: null },
    { stdout: env.stdout, stderr: env.stderr, stdin: null, terminal: null },
  );
  try {
    await launched.agent.poweroff();
  } catch (err) {
    log.debug(`poweroff request: ${(err as Error).message}`);
  }
  return exit.exitCode;
}

/** Durations of the orchestration steps, for the info line `bench:clone` reads. */
class StepTimer {
  private readonly started = performance.now();
  private last = this.started;
  private readonly laps: string[] = [];

  lap(step: string): void {
    const now = performance.now();
    this.laps.push(`${step} ${Math.round(now - this.last)} ms`);
    this.last = now;
  }

  summary(): string {
    return `${Math.round(this.last - this.started)} ms (${this.laps.join(', ')})`;
  }
}
