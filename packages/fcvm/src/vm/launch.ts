/**
 * Boots one VM with the agent in it, for any caller that needs a running guest (`podman run`
 * today; clones later). Every resource is registered on the returned cleanup stack the moment it
 * exists, so a failure at any step (or a signal) releases exactly what was acquired.
 *
 *   VM dir -> registry record -> CoW root disk -> per-VM initrd (agent + token) -> VMM
 *   -> agent session (hello) -> control socket for `fcvm exec`
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_RUN_DIR, GUEST_TOKEN_PATH } from '@fcvm/protocol';
import { type AgentClient, AgentRelay, connectWithRetry } from '../agent/index.js';
import { type AssetPaths, createAgentInitrd, locateAgentBundle } from '../assets/index.js';
import type { FcvmConfig, HypervisorChoice } from '../config.js';
import type { DataDir } from '../data-dir.js';
import { FcvmError } from '../errors.js';
import { selectHypervisor } from '../hypervisor/select.js';
import type { DiskSpec, VmHandle } from '../hypervisor/types.js';
import { log } from '../log.js';
import { newVmId, type VmRecordInput } from '../state/record.js';
import type { Registry } from '../state/registry.js';
import { processStartTime } from '../util/proc.js';
import type { CleanupStack } from './cleanup-stack.js';
import { createCowDisk } from './disk.js';
import { guestRamPath } from './leftovers.js';

export interface LaunchOptions {
  readonly name: string;
  readonly vcpus: number;
  readonly memoryMib: number;
  readonly hugepages: boolean;
  readonly noSwap: boolean;
  readonly hypervisor: HypervisorChoice;
  readonly kernelPath: string | null;
  /** Read-only disks after the root disk (guest /dev/vdb, /dev/vdc, ...). */
  readonly extraDisks: readonly Omit<DiskSpec, 'format'>[];
  /** Fields of the registry record's `config` (image, labels, tty, ...). */
  readonly recordConfig: NonNullable<VmRecordInput['config']>;
}

export interface LaunchedVm {
  readonly vmId: string;
  readonly vmDir: string;
  readonly consoleLogPath: string;
  readonly vm: VmHandle;
  readonly agent: AgentClient;
  /** Releases everything above in reverse order; idempotent. */
  readonly cleanup: CleanupStack;
}

/** In the VM dir: the relay socket for other fcvm processes, and the token they present to it. */
export const RELAY_SOCKET_NAME = 'relay.sock';
export const RELAY_TOKEN_NAME = 'relay.token';

/** A cold boot under software emulation takes several seconds; a loaded CI machine more. */
const AGENT_DEADLINE_MS = 120_000;

/** Console logs of ended VMs kept in <data>/logs. */
const KEPT_LOGS = 20;

export async function launchVm(
  env: { dataDir: DataDir; config: FcvmConfig; registry: Registry; assets: AssetPaths },
  options: LaunchOptions,
  cleanup: CleanupStack,
  signal: AbortSignal,
): Promise<LaunchedVm> {
  const { dataDir, registry, assets } = env;
  const hypervisor = await selectHypervisor(options.hypervisor, env.config, dataDir);
  const agentBundle = locateAgentBundle();
  if (agentBundle === undefined) {
    throw new FcvmError(
      'ASSETS_MISSING',
      'The guest agent bundle (fc-agent.mjs) is missing; rebuild fcvm (npm run build).',
    );
  }

  const vmId = newVmId();
  const vmDir = dataDir.vmDir(vmId);
  mkdirSync(vmDir, { recursive: true, mode: 0o700 });
  cleanup.defer('remove the VM directory', () => rmSync(vmDir, { recursive: true, force: true }));
  const consoleLogPath = join(vmDir, 'console.log');
  const keptLog = keptLogPath(dataDir, options.name, vmId);
  cleanup.defer('keep the console log', () => keepLog(dataDir, consoleLogPath, keptLog));

  await registry.save({
    vm_id: vmId,
    name: options.name,
    pid: process.pid,
    status: 'starting',
    config: {
      ...options.recordConfig,
      vcpu: options.vcpus,
      memory_mib: options.memoryMib,
      hypervisor: hypervisor.kind,
      hugepages: options.hugepages,
    },
  });
  cleanup.defer('remove the registry record', () => registry.remove(vmId));

  const qcow2 = hypervisor.capabilities.diskFormats.includes('qcow2');
  const rootDisk = await createCowDisk(assets.rootfs, join(vmDir, qcow2 ? 'rootfs.qcow2' : 'rootfs.raw'), { qcow2 });

  const token = randomBytes(32).toString('hex');
  const initrdPath = join(vmDir, 'initrd.img');
  await createAgentInitrd({
    baseInitrd: assets.initrd,
    agentScript: agentBundle,
    outPath: initrdPath,
    extraFiles: [{ path: GUEST_TOKEN_PATH.slice(GUEST_RUN_DIR.length + 1), data: token }],
  });

  const ramPath = guestRamPath(vmId, vmDir);
  cleanup.defer('remove the guest RAM file', () => rmSync(ramPath, { force: true }));
  signal.throwIfAborted();
  const vm = await hypervisor.boot(
    {
      vmId,
      vmDir,
      kernelPath:
        options.kernelPath ?? (hypervisor.capabilities.kernelFormat === 'vmlinux' ? assets.vmlinux : assets.kernel),
      initrdPath,
      bootArgs: 'quiet',
      vcpus: options.vcpus,
      memoryMib: options.memoryMib,
      hugepages: options.hugepages,
      trackDirtyPages: true,
      disks: [
        { id: 'rootfs', path: rootDisk.path, readOnly: false, format: rootDisk.format },
        ...options.extraDisks.map((disk) => ({ ...disk, format: 'raw' as const })),
      ],
      net: null,
      memoryFilePath: ramPath,
      netnsPath: null,
      metadata: null,
      consoleLogPath,
      noSwap: options.noSwap,
    },
    signal,
  );
  cleanup.defer('stop the VM', async () => {
    await vm.stop({ graceMs: 3_000 });
  });
  await registry.update(vmId, (record) => ({
    ...record,
    children: [{ pid: vm.pid, start_time: processStartTime(vm.pid) ?? 0, role: hypervisor.kind }],
  }));

  const agent = await connectAgent(vm, token, `the guest's console log is kept at ${keptLog}`, signal);
  cleanup.defer('close the agent session', () => agent.destroy());
  // Other fcvm processes (fcvm exec) reach the agent through this relay, with the token from the VM dir.
  writeFileSync(join(vmDir, RELAY_TOKEN_NAME), token, { mode: 0o600 });
  const relay = await AgentRelay.listen(agent, join(vmDir, RELAY_SOCKET_NAME), token);
  cleanup.defer('close the agent relay', () => relay.close());
  log.info(`VM ${options.name} (${vmId}) is up: ${hypervisor.kind}, ${options.vcpus} vCPU, ${options.memoryMib} MiB`);
  return { vmId, vmDir, consoleLogPath, vm, agent, cleanup };
}

/** The guest needs seconds to boot and start the agent: retry until it answers, the VM dies, or time runs out. */
async function connectAgent(
  vm: VmHandle,
  token: string,
  diagnostics: string,
  signal: AbortSignal,
): Promise<AgentClient> {
  const died = vm.exited.then((exit) => {
    throw new FcvmError(
      'HYPERVISOR',
      `The VM stopped (VMM exit ${exit.code ?? exit.signal}) before its agent answered; ${diagnostics}.`,
    );
  });
  died.catch(() => undefined); // observed only by the race below
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([
      connectWithRetry((s) => vm.openChannel(s), {
        token,
        deadlineMs: AGENT_DEADLINE_MS,
        signal: stop.signal,
        diagnostics,
        // A session that breaks or goes silent later is replaced on a fresh channel (AgentClient.attach).
        reopen: () => vm.openChannel(),
      }),
      died,
    ]);
  } finally {
    stop.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

/** Where a VM's console log is kept after the VM dir is gone. */
export function keptLogPath(dataDir: DataDir, name: string, vmId: string): string {
  return join(dataDir.logs, `${name}-${vmId}.log`);
}

function keepLog(dataDir: DataDir, source: string, target: string): void {
  mkdirSync(dataDir.logs, { recursive: true, mode: 0o700 });
  try {
    copyFileSync(source, target);
  } catch {
    return; // no console log was written
  }
  const logs = readdirSync(dataDir.logs).filter((f) => f.endsWith('.log'));
  if (logs.length <= KEPT_LOGS) return;
  const byAge = logs.map((f) => ({ f, mtime: statMtime(join(dataDir.logs, f)) })).sort((a, b) => a.mtime - b.mtime);
  for (const { f } of byAge.slice(0, logs.length - KEPT_LOGS)) rmSync(join(dataDir.logs, f), { force: true });
}

function statMtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
