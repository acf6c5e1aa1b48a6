/**
 * Boots one VM with the agent in it, for any caller that needs a running guest (`podman run`
 * today; clones later). Every resource is registered on the returned cleanup stack the moment it
 * exists, so a failure at any step (or a signal) releases exactly what was acquired.
 *
 *   prepareVm:       VM dir -> registry record
 *   attachNetwork:   network (namespace, tap, pasta; network/), a clone keeping its guest identity
 *   launchVm only:   CoW root disk -> per-VM initrd (agent + token) -> VMM boot
 *   adoptVmm:        VMM in the registry, stopped on cleanup
 *   connectAndRelay: agent session (hello) -> relay socket for `fcvm exec` and `snapshot create`
 * A clone (vm/clone.ts) runs the same steps with a restore in place of the boot.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_RUN_DIR, GUEST_TOKEN_PATH, type RestoreIdentity } from '@fcvm/protocol';
import { type AgentClient, AgentRelay, connectWithRetry } from '../agent/index.js';
import { type AssetPaths, createAgentInitrd, locateAgentBundle } from '../assets/index.js';
import type { FcvmConfig, HypervisorChoice } from '../config.js';
import type { DataDir } from '../data-dir.js';
import { FcvmError } from '../errors.js';
import { selectHypervisor } from '../hypervisor/select.js';
import type { DiskSpec, Hypervisor, HypervisorKind, VmHandle } from '../hypervisor/types.js';
import { log } from '../log.js';
import { type NetworkRequest, setupNetwork, type VmNetwork } from '../network/index.js';
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
  /** The VM's network (network/index.ts), or null for none. */
  readonly network: Omit<NetworkRequest, 'vmId' | 'registry'> | null;
}

export interface LaunchedVm {
  readonly vmId: string;
  readonly vmDir: string;
  readonly consoleLogPath: string;
  /** Where the console log is kept once the VM dir is gone (named in errors). */
  readonly keptLogPath: string;
  readonly vm: VmHandle;
  readonly agent: AgentClient;
  readonly relay: AgentRelay;
  readonly network: VmNetwork | null;
  /** Releases everything above in reverse order; idempotent. */
  readonly cleanup: CleanupStack;
  /** How the VM was started: what a snapshot of it needs (vm/snapshot-create.ts). */
  readonly boot: BootFacts;
}

export interface BootFacts {
  readonly hypervisor: HypervisorKind;
  readonly kernelPath: string;
  readonly initrdPath: string | null;
  readonly token: string;
  /** Root disk first. */
  readonly disks: readonly DiskSpec[];
}

/** In the VM dir: the relay socket for other fcvm processes, and the token they present to it. */
export const RELAY_SOCKET_NAME = 'relay.sock';
export const RELAY_TOKEN_NAME = 'relay.token';

/** A cold boot under software emulation takes several seconds; a loaded CI machine more. */
const AGENT_DEADLINE_MS = 120_000;

/** Console logs of ended VMs kept in <data>/logs. */
const KEPT_LOGS = 20;

export interface LaunchEnv {
  readonly dataDir: DataDir;
  readonly config: FcvmConfig;
  readonly registry: Registry;
  readonly assets: AssetPaths;
}

/** A VM dir and registry record, registered on the cleanup stack: the first steps of a boot and a restore. */
export interface PreparedVm {
  readonly vmId: string;
  readonly vmDir: string;
  readonly consoleLogPath: string;
  /** Where the console log is kept once the VM dir is gone (named in errors). */
  readonly keptLogPath: string;
  readonly hypervisor: Hypervisor;
}

export async function prepareVm(
  env: Omit<LaunchEnv, 'assets'>,
  options: Pick<LaunchOptions, 'name' | 'vcpus' | 'memoryMib' | 'hugepages' | 'hypervisor' | 'recordConfig'>,
  cleanup: CleanupStack,
): Promise<PreparedVm> {
  const { dataDir, registry } = env;
  const hypervisor = await selectHypervisor(options.hypervisor, env.config, dataDir);
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
  return { vmId, vmDir, consoleLogPath, keptLogPath: keptLog, hypervisor };
}

/** Records the VMM in the registry (so a sweeper can end it) and stops it on cleanup. */
export async function adoptVmm(
  registry: Registry,
  prepared: PreparedVm,
  vm: VmHandle,
  cleanup: CleanupStack,
): Promise<void> {
  cleanup.defer('stop the VM', async () => {
    await vm.stop({ graceMs: 3_000 });
  });
  await registry.update(prepared.vmId, (record) => ({
    ...record,
    children: [
      ...record.children,
      { pid: vm.pid, start_time: processStartTime(vm.pid) ?? 0, role: prepared.hypervisor.kind },
    ],
  }));
}

export interface ConnectOptions {
  readonly deadlineMs: number;
  readonly restoreEpoch?: number;
  readonly restore?: RestoreIdentity;
  /** Where to look when the guest fails: named in the error (the kept console log). */
  readonly diagnostics: string;
}

/**
 * The agent session (hello, with `restore` for a clone) and the relay other fcvm processes use.
 * `deadlineMs`: a cold boot needs long; a restored guest answers at once.
 */
export async function connectAndRelay(
  vm: VmHandle,
  vmDir: string,
  token: string,
  options: ConnectOptions,
  cleanup: CleanupStack,
  signal: AbortSignal,
): Promise<{ agent: AgentClient; relay: AgentRelay }> {
  const agent = await connectAgent(vm, token, options, signal);
  cleanup.defer('close the agent session', () => agent.destroy());
  // Other fcvm processes (fcvm exec) reach the agent through this relay, with the token from the VM dir.
  writeFileSync(join(vmDir, RELAY_TOKEN_NAME), token, { mode: 0o600 });
  const relay = await AgentRelay.listen(agent, join(vmDir, RELAY_SOCKET_NAME), token);
  cleanup.defer('close the agent relay', () => relay.close());
  return { agent, relay };
}

export async function launchVm(
  env: LaunchEnv,
  options: LaunchOptions,
  cleanup: CleanupStack,
  signal: AbortSignal,
): Promise<LaunchedVm> {
  const { registry, assets } = env;
  const agentBundle = locateAgentBundle();
  if (agentBundle === undefined) {
    throw new FcvmError(
      'ASSETS_MISSING',
      'The guest agent bundle (fc-agent.mjs) is missing; rebuild fcvm (npm run build).',
    );
  }
  const prepared = await prepareVm(env, options, cleanup);
  const { vmId, vmDir, consoleLogPath, hypervisor } = prepared;
  const network =
    options.network === null ? null : await attachNetwork(registry, vmId, vmDir, options.network, cleanup);
  const { rootDisk, token, initrdPath } = await createBootFiles(assets, agentBundle, prepared);

  const ramPath = guestRamPath(vmId, vmDir);
  cleanup.defer('remove the guest RAM file', () => rmSync(ramPath, { force: true }));
  signal.throwIfAborted();
  const kernelPath =
    options.kernelPath ?? (hypervisor.capabilities.kernelFormat === 'vmlinux' ? assets.vmlinux : assets.kernel);
  const disks: DiskSpec[] = [
    { id: 'rootfs', path: rootDisk.path, readOnly: false, format: rootDisk.format },
    ...options.extraDisks.map((disk) => ({ ...disk, format: 'raw' as const })),
  ];
  const vm = await hypervisor.boot(
    {
      vmId,
      vmDir,
      kernelPath,
      initrdPath,
      bootArgs: 'quiet',
      vcpus: options.vcpus,
      memoryMib: options.memoryMib,
      hugepages: options.hugepages,
      trackDirtyPages: true,
      disks,
      net: network?.tap ?? null,
      memoryFilePath: ramPath,
      netnsPath: network?.netnsPath ?? null,
      metadata: null,
      consoleLogPath,
      noSwap: options.noSwap,
    },
    signal,
  );
  await adoptVmm(registry, prepared, vm, cleanup);
  const { agent, relay } = await connectAndRelay(
    vm,
    vmDir,
    token,
    { deadlineMs: AGENT_DEADLINE_MS, diagnostics: consoleDiagnostics(prepared) },
    cleanup,
    signal,
  );
  log.info(`VM ${options.name} (${vmId}) is up: ${hypervisor.kind}, ${options.vcpus} vCPU, ${options.memoryMib} MiB`);
  return {
    vmId,
    vmDir,
    consoleLogPath,
    keptLogPath: prepared.keptLogPath,
    vm,
    agent,
    relay,
    network,
    cleanup,
    boot: { hypervisor: hypervisor.kind, kernelPath, initrdPath, token, disks },
  };
}

/** The VM's copy-on-write root disk and its per-VM initrd (the agent bundle plus a fresh token), in the VM dir. */
async function createBootFiles(
  assets: AssetPaths,
  agentBundle: string,
  prepared: PreparedVm,
): Promise<{ rootDisk: Awaited<ReturnType<typeof createCowDisk>>; token: string; initrdPath: string }> {
  const qcow2 = prepared.hypervisor.capabilities.diskFormats.includes('qcow2');
  const rootDisk = await createCowDisk(assets.rootfs, join(prepared.vmDir, qcow2 ? 'rootfs.qcow2' : 'rootfs.raw'), {
    qcow2,
  });
  const token = randomBytes(32).toString('hex');
  const initrdPath = join(prepared.vmDir, 'initrd.img');
  await createAgentInitrd({
    baseInitrd: assets.initrd,
    agentScript: agentBundle,
    outPath: initrdPath,
    extraFiles: [{ path: GUEST_TOKEN_PATH.slice(GUEST_RUN_DIR.length + 1), data: token }],
  });
  return { rootDisk, token, initrdPath };
}

/**
 * The network's release goes on the stack at once; its helpers and addresses go into the record.
 * A clone calls this with `clone: { address, gateway, mac }` from its snapshot before the restore.
 */
export async function attachNetwork(
  registry: Registry,
  vmId: string,
  vmDir: string,
  request: Omit<NetworkRequest, 'vmId' | 'registry'>,
  cleanup: CleanupStack,
): Promise<VmNetwork> {
  const network = await setupNetwork({ ...request, vmId, registry }, vmDir);
  cleanup.defer('release the network', () => network.release());
  await registry.update(vmId, (record) => ({
    ...record,
    children: [...record.children, ...network.helpers.map((helper) => ({ ...helper }))],
    config: {
      ...record.config,
      network: { ...record.config.network, ...network.record },
      port_mappings: network.ports.map((port) => ({
        host_ip: port.hostIp,
        host_port: port.hostPort,
        guest_port: port.guestPort,
        protocol: port.protocol,
      })),
    },
  }));
  return network;
}

/** The guest needs seconds to boot and start the agent: retry until it answers, the VM dies, or time runs out. */
async function connectAgent(
  vm: VmHandle,
  token: string,
  options: ConnectOptions,
  signal: AbortSignal,
): Promise<AgentClient> {
  const died = vm.exited.then((exit) => {
    throw new FcvmError(
      'HYPERVISOR',
      `The VM stopped (VMM exit ${exit.code ?? exit.signal}) before its agent answered; ${options.diagnostics}.`,
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
        ...options,
        signal: stop.signal,
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

/** The sentence errors about a failing guest end with. */
export function consoleDiagnostics(prepared: Pick<PreparedVm, 'keptLogPath'>): string {
  return `the guest's console log is kept at ${prepared.keptLogPath}`;
}

/** Where a VM's console log is kept after the VM dir is gone. */
export function keptLogPath(dataDir: DataDir, name: string, vmId: string): string {
  return join(dataDir.logs, `${name}-${vmId}.log`);
}

function keepLog(dataDir: DataDir, source: string, target: string): void {
  // A data dir removed meanwhile (a finished test's, say) is not brought back to hold one log.
  if (!existsSync(dataDir.root)) return;
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
