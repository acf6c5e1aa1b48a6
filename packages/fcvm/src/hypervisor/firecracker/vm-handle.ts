/**
 * A running (or paused) Firecracker VM: pause, resume, snapshot, metadata, the agent channel and
 * an orderly stop. It owns its Firecracker process and the sockets Firecracker created.
 */
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { AGENT_VSOCK_PORT } from '@fcvm/protocol';
import type { SwapScope } from '../../cgroup/swap-scope.js';
import { FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import type { Capabilities, SnapshotFiles, SnapshotTarget, VmExit, VmHandle } from '../types.js';
import { snapshotCreateBody } from './api-bodies.js';
import type { FirecrackerApiClient } from './api-client.js';
import { type MmdsContents, MmdsContentsSchema } from './api-schemas.js';
import { type FirecrackerProcess, removeSocket } from './process.js';
import { connectWithRetry } from './vsock.js';

export const FIRECRACKER_CAPABILITIES: Capabilities = Object.freeze({
  uffdRestore: true,
  diffSnapshots: true,
  metadataService: true,
  channel: 'vsock',
  hardwareAccelerated: true,
  diskFormats: ['raw'] as const,
  kernelFormat: 'vmlinux' as const,
});

export const SNAPSHOT_MEMORY_FILE = 'memory.bin';
export const SNAPSHOT_VMSTATE_FILE = 'vmstate.bin';

const DEFAULT_STOP_GRACE_MS = 5000;
const DEFAULT_CHANNEL_TIMEOUT_MS = 60_000;

/** Snapshot writes are bounded by disk speed: at least 5 minutes, and 10 s per GiB of guest memory. */
export function snapshotTimeoutMs(memoryMib: number): number {
  return Math.max(300_000, Math.ceil(memoryMib / 1024) * 10_000);
}

/** The MMDS store must be a JSON object; anything else is a caller bug worth a clear sentence. */
export function toMmdsContents(data: unknown): MmdsContents {
  const parsed = MmdsContentsSchema.safeParse(data);
  if (!parsed.success) {
    throw new FcvmError('USAGE', 'VM metadata for Firecracker MMDS must be a JSON object with JSON values only.');
  }
  return parsed.data;
}

export interface VmHandleOptions {
  readonly vmId: string;
  readonly vmDir: string;
  readonly memoryMib: number | null;
  /** The VM has a network interface and therefore MMDS. */
  readonly hasMetadataService: boolean;
  /** Where Firecracker listens for host-initiated vsock connections. */
  readonly vsockPath: string;
  readonly paused: boolean;
  /** `--no-swap` scope holding the process; released when the process has exited. */
  readonly swapScope: SwapScope | null;
}

export class FirecrackerVm implements VmHandle {
  readonly kind = 'firecracker' as const;
  readonly capabilities = FIRECRACKER_CAPABILITIES;
  readonly pid: number;
  readonly exited: Promise<VmExit>;
  readonly vsockPath: string;
  private readonly vmm: FirecrackerProcess;
  private readonly client: FirecrackerApiClient;
  private readonly options: VmHandleOptions;
  private paused: boolean;
  private stopping: Promise<VmExit> | undefined;

  constructor(vmm: FirecrackerProcess, client: FirecrackerApiClient, options: VmHandleOptions) {
    this.vmm = vmm;
    this.client = client;
    this.options = options;
    this.pid = vmm.pid;
    this.vsockPath = options.vsockPath;
    this.paused = options.paused;
    // However the process ends (stop(), a guest reboot, a crash), its empty scope is removed.
    this.exited = vmm.exited.then(async (exit) => {
      await options.swapScope?.release();
      return exit;
    });
  }

  /** The API client, for calls the interface does not cover (drive swaps, balloon). */
  get api(): FirecrackerApiClient {
    return this.client;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  async pause(): Promise<void> {
    await this.vmm.guard('pause', () => this.client.setVmState('Paused', { timeoutMs: 30_000 }));
    this.paused = true;
  }

  async resume(): Promise<void> {
    await this.vmm.guard('resume', () => this.client.setVmState('Resumed', { timeoutMs: 30_000 }));
    this.paused = false;
  }

  async snapshot(target: SnapshotTarget): Promise<SnapshotFiles> {
    if (!this.paused) {
      throw new FcvmError('HYPERVISOR', `VM ${this.options.vmId} must be paused before a snapshot is taken.`);
    }
    const files: SnapshotFiles = {
      memoryPath: join(target.dir, SNAPSHOT_MEMORY_FILE),
      vmstatePath: join(target.dir, SNAPSHOT_VMSTATE_FILE),
      kind: target.kind,
    };
    const body = snapshotCreateBody({
      vmstatePath: files.vmstatePath,
      memoryPath: files.memoryPath,
      kind: target.kind,
    });
    const timeoutMs = snapshotTimeoutMs(this.options.memoryMib ?? 0);
    await this.vmm.guard('snapshot creation', () => this.client.createSnapshot(body, { timeoutMs }));
    return files;
  }

  async setMetadata(data: unknown): Promise<void> {
    if (!this.options.hasMetadataService) {
      throw new FcvmError(
        'HYPERVISOR',
        `VM ${this.options.vmId} has no network interface, so Firecracker cannot serve it metadata.`,
      );
    }
    const contents = toMmdsContents(data);
    await this.vmm.guard('metadata update', () => this.client.putMmds(contents));
  }

  openChannel(signal?: AbortSignal): Promise<Socket> {
    return connectWithRetry(this.vsockPath, AGENT_VSOCK_PORT, {
      signal,
      totalTimeoutMs: DEFAULT_CHANNEL_TIMEOUT_MS,
      vmGone: () => (this.vmm.running ? undefined : this.vmm.deadError('the connection to the guest agent')),
    });
  }

  stop(options: { graceMs?: number } = {}): Promise<VmExit> {
    this.stopping ??= this.stopOnce(options.graceMs ?? DEFAULT_STOP_GRACE_MS);
    return this.stopping;
  }

  private async stopOnce(graceMs: number): Promise<VmExit> {
    let exit = this.vmm.exit;
    // A paused guest cannot react to Ctrl-Alt-Del, and the action exists on x86 only.
    if (!exit && !this.paused && process.arch === 'x64' && graceMs > 0) {
      try {
        await this.client.action('SendCtrlAltDel', { timeoutMs: Math.min(graceMs, 2000) });
        exit = await this.vmm.exitWithin(graceMs);
      } catch (err) {
        log.debug(
          `VM ${this.options.vmId}: Ctrl-Alt-Del not delivered (${(err as Error).message}); killing Firecracker`,
        );
      }
    }
    if (!exit) this.vmm.kill('SIGKILL');
    // `exited` also releases the --no-swap scope.
    exit = await this.exited;
    removeSocket(this.vmm.apiSocketPath);
    removeSocket(this.vsockPath);
    return exit;
  }
}
