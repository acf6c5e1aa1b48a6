/**
 * `fcvm podman run`: one container in one new VM, in the foreground. fcvm's exit status is the
 * container's; a signal (SIGINT, SIGTERM, SIGHUP) stops the VM and exits 128+signal; every path
 * releases everything (vm/launch.ts registers each resource on the cleanup stack).
 */
import { availableParallelism, totalmem } from 'node:os';
import { basename, dirname } from 'node:path';
import type { BootPlan, ExitReport } from '@fcvm/protocol';
import { type AgentClient, RelayHostRoute, type SessionIo, ttyTerminal } from '../agent/index.js';
import { type AssetPaths, ensureAssets, type ProgressListener } from '../assets/index.js';
import type { FcvmConfig } from '../config.js';
import { type DataDir, ensureDataDir } from '../data-dir.js';
import { FcvmError, notImplemented, usageError } from '../errors.js';
import type { VmHandle } from '../hypervisor/types.js';
import { log } from '../log.js';
import {
  guestDnsServers,
  guestNtpSources,
  proxyEnvironment,
  publishedHealthUrl,
  refuseUnsupportedNetwork,
  type VmNetwork,
} from '../network/index.js';
import type { Registry } from '../state/registry.js';
import { CleanupStack } from './cleanup-stack.js';
import { type HttpHealthCheck, monitorHealth } from './health-monitor.js';
import { resolveImage } from './image-source.js';
import { type LaunchedVm, launchVm } from './launch.js';
import { guestRamPath, sweepLeftovers } from './leftovers.js';
import { MAX_VCPUS, type RunRequest } from './run-request.js';
import { type SnapshotSource, snapshotRoute } from './snapshot-create.js';

export interface RunEnvironment {
  readonly dataDir: DataDir;
  readonly config: FcvmConfig;
  readonly registry: Registry;
  /** Shows asset building when something is missing (the first run on a machine). */
  readonly onSetupProgress?: ProgressListener;
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
}

/** How long a failed attach waits for the VMM's exit, which explains the failure better when it comes. */
const VMM_EXIT_GRACE_MS = 2_000;

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Flags whose capability has not landed: refuse them instead of ignoring them. */
function refuseUnsupported(request: RunRequest): void {
  if (request.volumes.length > 0) throw notImplemented('Sharing host directories (--map)');
  if (request.privileged) throw notImplemented('Privileged containers (--privileged)');
  if (request.rootfsSizeBytes !== null) throw notImplemented('Growing the root disk (--rootfs-size)');
  refuseUnsupportedNetwork(request.network);
  // A health-check URL must name a published guest port: say so before anything boots.
  if (request.healthCheckUrl !== null) {
    publishedHealthUrl(
      request.healthCheckUrl,
      request.publish.map((port) => ({ ...port, hostIp: port.hostIp ?? '127.0.0.1' })),
    );
  }
}

export function resolveVcpus(vcpus: RunRequest['vcpus']): number {
  return vcpus === 'unlimited' ? Math.min(availableParallelism(), MAX_VCPUS) : vcpus;
}

/** `unlimited`: half the host's memory, at least 512 MiB, even (for huge pages). */
export function resolveMemoryMib(memoryMib: RunRequest['memoryMib']): number {
  if (memoryMib !== 'unlimited') return memoryMib;
  return Math.max(512, Math.floor(totalmem() / 2 ** 20 / 2 / 2) * 2);
}

export async function runContainer(request: RunRequest, env: RunEnvironment): Promise<number> {
  refuseUnsupported(request);
  if (request.tty && !env.stdin.isTTY) {
    throw usageError('-t needs a terminal on stdin; run it from a terminal or leave out -t.');
  }
  ensureDataDir(env.dataDir);
  await sweepLeftovers(env.registry, env.dataDir);
  const clash = env.registry.findByName(request.name)[0];
  if (clash) {
    throw usageError(`A VM named ${request.name} is already running (fcvm pid ${clash.pid}); choose another --name.`);
  }

  return inForeground(request.name, async (cleanup, signal) => {
    const assets = await ensureAssets(env.dataDir, env.config, { onProgress: env.onSetupProgress, signal });
    const exit = await bootAndRun(request, env, assets, cleanup, signal);
    return exit.exitCode;
  });
}

/**
 * Runs `work` as the foreground life of VM `name`: SIGINT/SIGTERM/SIGHUP abort it (exit 128+signal)
 * and the cleanup stack is released on every path. Shared by `podman run` and `snapshot run`.
 */
export async function inForeground(
  name: string,
  work: (cleanup: CleanupStack, signal: AbortSignal) => Promise<number>,
): Promise<number> {
  const abort = new AbortController();
  let caughtSignal: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (caughtSignal === undefined) log.info(`${signal}: stopping VM ${name}`);
    caughtSignal ??= signal;
    abort.abort(new FcvmError('INTERNAL', `interrupted by ${signal}`));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  const cleanup = new CleanupStack();
  try {
    return await work(cleanup, abort.signal);
  } catch (err) {
    if (caughtSignal !== undefined) return 128 + (SIGNAL_NUMBERS[caughtSignal] ?? 15);
    throw err;
  } finally {
    await cleanup.dispose();
    for (const s of signals) process.off(s, onSignal);
  }
}

async function bootAndRun(
  request: RunRequest,
  env: RunEnvironment,
  assets: AssetPaths,
  cleanup: CleanupStack,
  signal: AbortSignal,
): Promise<ExitReport> {
  const image = resolveImage(request.image, env.dataDir.assets);
  const launched = await launchVm(
    { dataDir: env.dataDir, config: env.config, registry: env.registry, assets },
    {
      name: request.name,
      vcpus: resolveVcpus(request.vcpus),
      memoryMib: resolveMemoryMib(request.memoryMib),
      hugepages: request.hugepages,
      noSwap: request.noSwap,
      hypervisor: request.hypervisor,
      kernelPath: request.kernelPath,
      extraDisks: image.archivePath === null ? [] : [{ id: 'image', path: image.archivePath, readOnly: true }],
      network: { mode: request.network, publish: request.publish, dnsServers: guestDnsServers(env.config) },
      recordConfig: {
        image: request.image,
        labels: request.labels,
        tty: request.tty,
        interactive: request.interactive,
        user: request.user,
        process_type: 'vm',
        health_check_url: request.healthCheckUrl,
      },
    },
    cleanup,
    signal,
  );
  const { agent, vm, vmId } = launched;

  const plan: BootPlan = {
    hostname: request.name,
    image: image.source,
    imageReference: image.reference,
    command: request.command.length > 0 ? [...request.command] : null,
    // The host's proxy settings reach the container unless --env overrides them.
    env: { ...proxyEnvironment(), ...Object.fromEntries(request.env) },
    user: request.user,
    workdir: null,
    tty: request.tty,
    interactive: request.interactive,
    network: launched.network?.plan ?? { kind: 'none' },
    hostTimeMs: Date.now(),
    ntpSources: guestNtpSources(env.config),
  };
  await agent.sendPlan(plan);
  launched.relay.handleHostRoute(
    RelayHostRoute.Snapshot,
    snapshotRoute(env.dataDir, {
      vm,
      agent,
      vmId,
      vmName: request.name,
      boot: launched.boot,
      ramPath: guestRamPath(vmId, launched.vmDir),
      vcpus: resolveVcpus(request.vcpus),
      memoryMib: resolveMemoryMib(request.memoryMib),
      hugepages: request.hugepages,
      image: request.image,
      container: {
        command: plan.command === null ? null : [...plan.command],
        env: { ...plan.env },
        user: plan.user,
        workdir: plan.workdir,
        tty: plan.tty,
        interactive: plan.interactive,
      },
      network: snapshotNetwork(launched.network),
      parent: null,
      assets: { kernel: basename(dirname(launched.boot.kernelPath)), rootfs: basename(assets.rootfs) },
    }),
  );
  const http =
    request.healthCheckUrl === null
      ? null
      : { url: publishedHealthUrl(request.healthCheckUrl, launched.network), timeoutMs: request.healthCheckTimeoutMs };
  return superviseContainer(launched, { tty: request.tty, interactive: request.interactive, http }, env, signal);
}

/** What a clone needs to rebuild this VM's network: the mode, the ports, the guest's own identity. */
function snapshotNetwork(network: VmNetwork | null): SnapshotSource['network'] {
  if (network === null || network.plan.kind !== 'static') return { mode: 'none', port_mappings: [], guest: null };
  return {
    mode: network.mode,
    port_mappings: network.ports.map((port) => ({
      host_ip: port.hostIp,
      host_port: port.hostPort,
      guest_port: port.guestPort,
      protocol: port.protocol,
    })),
    guest: { address: network.plan.address, gateway: network.plan.gateway, mac: network.tap.guestMac },
  };
}

/** What superviseContainer needs of a started VM (a boot or a clone). */
export type SupervisedVm = Pick<
  LaunchedVm,
  'vmId' | 'vmDir' | 'consoleLogPath' | 'keptLogPath' | 'vm' | 'agent' | 'cleanup'
>;

/**
 * The foreground part of a VM's life: attach to the container (its output to our stdout/stderr),
 * keep health in the registry, and end with the container's exit report, the VMM's death or the
 * signal; then record the exit and power the VM off.
 */
export async function superviseContainer(
  launched: SupervisedVm,
  options: { readonly tty: boolean; readonly interactive: boolean; readonly http: HttpHealthCheck | null },
  env: Pick<RunEnvironment, 'dataDir' | 'registry' | 'stdin' | 'stdout' | 'stderr'>,
  signal: AbortSignal,
): Promise<ExitReport> {
  const { agent, vm, vmId, cleanup } = launched;
  const healthStop = new AbortController();
  cleanup.defer('stop the health monitor', () => healthStop.abort());
  // The record says `running` once the container runs (the agent's started notice), so `fcvm exec`
  // before that is told "not running yet" instead of reaching a container that does not exist.
  const io = sessionIo(options, env, () => {
    env.registry
      .update(vmId, (record) => (record.status === 'starting' ? { ...record, status: 'running' } : record))
      .catch((err: unknown) => log.warn(`could not record VM ${vmId} as running: ${(err as Error).message}`));
    monitorHealth(agent, env.registry, vmId, healthStop.signal, options.http);
  });
  const restoreTerminal = io.terminal !== null ? enterRawMode(env.stdin) : () => {};
  cleanup.defer('restore the terminal', restoreTerminal);

  const exit = await attachUntilExit(agent, io, vm, launched.keptLogPath, signal);
  restoreTerminal();
  healthStop.abort();
  // The container has ended: a record that cannot be written now (a full data dir) must not turn
  // its exit status into fcvm's failure; the record is removed at cleanup anyway.
  await env.registry
    .update(vmId, (record) => ({ ...record, status: 'stopped', health_status: 'stopped', exit_code: exit.exitCode }))
    .catch((err: unknown) => log.warn(`could not record the exit of VM ${vmId}: ${(err as Error).message}`));
  try {
    await agent.poweroff();
  } catch (err) {
    log.debug(`poweroff request: ${(err as Error).message}`);
  }
  await Promise.race([vm.exited, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
  return exit;
}

/**
 * The container's exit through the agent; the VM stopping or the signal aborting end the wait with
 * their own error. `keptLog` is where the console log will be, for the message.
 */
async function attachUntilExit(
  agent: AgentClient,
  io: SessionIo,
  vm: VmHandle,
  keptLog: string,
  signal: AbortSignal,
): Promise<ExitReport> {
  const stopped = vm.exited.then((exit) => {
    throw new FcvmError(
      'HYPERVISOR',
      `The VM stopped unexpectedly (VMM exit ${exit.code ?? exit.signal}); see ${keptLog}.`,
    );
  });
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  // Only the race observes these two; once it is decided, their later rejections mean nothing.
  stopped.catch(() => undefined);
  aborted.catch(() => undefined);
  // A dying VMM breaks the channel a moment before its exit is seen: let the VM's own story win.
  const attached = agent.attach(io).catch(async (err: unknown) => {
    await Promise.race([vm.exited, new Promise((resolve) => setTimeout(resolve, VMM_EXIT_GRACE_MS).unref())]);
    throw err;
  });
  return Promise.race([attached, stopped, aborted]);
}

function sessionIo(
  request: { readonly tty: boolean; readonly interactive: boolean },
  env: Pick<RunEnvironment, 'stdin' | 'stdout' | 'stderr'>,
  onStarted: () => void,
): SessionIo {
  return {
    stdout: env.stdout,
    stderr: env.stderr,
    stdin: request.interactive || request.tty ? env.stdin : null,
    terminal: request.tty ? ttyTerminal(env.stdout) : null,
    onStarted,
  };
}

/** Raw mode so every key (Ctrl-C included) reaches the container; returns the undo. */
function enterRawMode(stdin: NodeJS.ReadStream): () => void {
  if (!stdin.isTTY) return () => {};
  stdin.setRawMode(true);
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    stdin.setRawMode(false);
  };
}
