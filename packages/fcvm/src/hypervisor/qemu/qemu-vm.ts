/**
 * One running QEMU process and its VM: the `VmHandle` of the qemu backend.
 *
 * Lifecycle:
 *   startQemuVm()  spawn (CPUs held by -S or waiting for -incoming) -> QMP up -> cgroup scope (--no-swap)
 *                  -> query-kvm; the caller then `cont`s or loads a state
 *   running <-> paused (QMP stop/cont); snapshot() only while paused
 *   exit (guest poweroff with -no-reboot, stop(), or a crash) -> sockets removed, scope released,
 *   then `exited` settles
 */
import { rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { disableSwap, type SwapScope } from '../../cgroup/swap-scope.js';
import { errnoCode, FcvmError, isFcvmError } from '../../errors.js';
import { log } from '../../log.js';
import type { Capabilities, SnapshotFiles, SnapshotTarget, VmExit, VmHandle } from '../types.js';
import { machineSockets, type QemuMachine, qemuArgs } from './command-line.js';
import { copyMemoryFile } from './memory-file.js';
import { queryStatus, saveVmState } from './migration.js';
import { launchQemu, logTail, type RunningQemu } from './qemu-process.js';
import { QmpClient } from './qmp-client.js';

const kvmSchema = z.object({ enabled: z.boolean(), present: z.boolean() });

/** How long to wait for QEMU's control socket after spawning it. */
const QMP_CONNECT_TIMEOUT_MS = 15_000;
/** Saving the state of a paused VM takes about a second under TCG (RAM in the stream: 97 MiB). */
const SAVE_TIMEOUT_MS = 120_000;
const DEFAULT_STOP_GRACE_MS = 3_000;
/** After `quit` or SIGTERM, how long QEMU gets before the next, harder step. */
const ESCALATION_STEP_MS = 2_000;

export interface QemuVmOptions {
  readonly binary: string;
  readonly machine: QemuMachine;
  readonly netnsPath: string | null;
  readonly noSwap: boolean;
  readonly signal?: AbortSignal;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function waitFor<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  const controller = new AbortController();
  return Promise.race([
    promise.finally(() => controller.abort()),
    sleep(ms, 'timeout' as const, { signal: controller.signal }).catch(() => 'timeout' as const),
  ]);
}

export class QemuVm implements VmHandle {
  readonly kind = 'qemu';
  readonly pid: number;
  readonly exited: Promise<VmExit>;
  private stopping: Promise<VmExit> | undefined;
  private exit: VmExit | undefined;

  constructor(
    readonly capabilities: Capabilities,
    private readonly machine: QemuMachine,
    running: RunningQemu,
    private readonly qmp: QmpClient,
    private readonly swapScope: SwapScope | null,
  ) {
    this.pid = running.pid;
    this.exited = running.exited.then(async (exit) => {
      this.exit = exit;
      await this.cleanUp();
      log.debug(`QEMU ${this.pid} of VM ${machine.vmId} exited (code ${exit.code}, signal ${exit.signal})`);
      return exit;
    });
  }

  private async cleanUp(): Promise<void> {
    this.qmp.close();
    for (const socket of machineSockets(this.machine)) {
      try {
        await rm(socket, { force: true });
      } catch (err) {
        log.warn(`Could not remove the socket ${socket}: ${describe(err)}`);
      }
    }
    await this.swapScope?.release();
  }

  private get hasExited(): boolean {
    return this.exit !== undefined;
  }

  async pause(): Promise<void> {
    await this.qmp.execute('stop');
  }

  async resume(): Promise<void> {
    await this.qmp.execute('cont');
  }

  async snapshot(target: SnapshotTarget): Promise<SnapshotFiles> {
    if (target.kind === 'diff') {
      throw new FcvmError('USAGE', 'The qemu backend cannot take diff snapshots; take a full snapshot instead.');
    }
    const state = await queryStatus(this.qmp);
    if (state.running) {
      throw new FcvmError('STATE', `VM ${this.machine.vmId} must be paused before a snapshot (it is ${state.status}).`);
    }
    if (state.status === 'postmigrate') {
      // QEMU refuses a second migration until the guest has run again.
      throw new FcvmError('STATE', `VM ${this.machine.vmId} was snapshotted since it was paused; resume it first.`);
    }
    const memoryPath = path.join(target.dir, 'memory.bin');
    const vmstatePath = path.join(target.dir, 'vmstate.bin');
    // Created up front with mode 0600 (guest memory is in it); 'wx': never overwrite an older snapshot.
    await writeFile(vmstatePath, '', { mode: 0o600, flag: 'wx' });
    // Only a shared RAM file holds the guest's memory. A clone maps its snapshot's file privately: its
    // own changes live in anonymous copy-on-write pages, so its RAM has to travel in the stream.
    const { memory } = this.machine;
    const ramFile = memory.kind === 'file' && memory.shared ? memory.path : null;
    await saveVmState(this.qmp, vmstatePath, {
      ignoreSharedRam: ramFile !== null,
      socketPath: this.machine.migrationSocketPath,
      timeoutMs: SAVE_TIMEOUT_MS,
      processExited: this.exited,
    });
    if (ramFile === null) {
      // The RAM is inside vmstate.bin; an empty memory.bin says so to restore().
      await writeFile(memoryPath, '', { mode: 0o600, flag: 'wx' });
    } else {
      // The VM is still paused (its RAM file cannot change under the copy) until the caller resumes it.
      await copyMemoryFile(ramFile, memoryPath);
    }
    return { memoryPath, vmstatePath, kind: 'full' };
  }

  async setMetadata(_data: unknown): Promise<void> {
    // capabilities.metadataService is false: the guest gets its data over the channel instead.
    log.debug(`VM ${this.machine.vmId}: the qemu backend has no metadata service; metadata not sent`);
  }

  async openChannel(signal?: AbortSignal): Promise<net.Socket> {
    signal?.throwIfAborted();
    const socketPath = this.machine.agentSocketPath;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      const onAbort = (): void => {
        socket.destroy();
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => {
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
        resolve(socket);
      });
      const onError = (err: Error): void => {
        signal?.removeEventListener('abort', onAbort);
        reject(
          new FcvmError('HYPERVISOR', `Could not connect to the agent channel of VM ${this.machine.vmId}.`, {
            cause: err,
            context: { socketPath },
          }),
        );
      };
      socket.once('error', onError);
    });
  }

  stop(options: { graceMs?: number } = {}): Promise<VmExit> {
    this.stopping ??= this.escalateStop(options.graceMs ?? DEFAULT_STOP_GRACE_MS);
    return this.stopping;
  }

  /** Power button, then `quit`, then SIGTERM, then SIGKILL; each step only if QEMU is still there. */
  private async escalateStop(graceMs: number): Promise<VmExit> {
    if (this.hasExited) return this.exited;
    if (this.qmp.isOpen) {
      try {
        if ((await queryStatus(this.qmp)).running) {
          await this.qmp.execute('system_powerdown');
          if ((await waitFor(this.exited, graceMs)) !== 'timeout') return this.exited;
        }
        await this.qmp.execute('quit');
        if ((await waitFor(this.exited, ESCALATION_STEP_MS)) !== 'timeout') return this.exited;
      } catch (err) {
        // QEMU exiting mid-command closes the connection: expected here, and the signals below cover the rest.
        log.debug(`VM ${this.machine.vmId}: QMP during stop: ${describe(err)}`);
      }
    }
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      if (this.hasExited) break;
      try {
        process.kill(this.pid, signal);
      } catch (err) {
        if (errnoCode(err) !== 'ESRCH') throw err;
      }
      if ((await waitFor(this.exited, ESCALATION_STEP_MS)) !== 'timeout') break;
    }
    return this.exited;
  }
}

/** Kills a QEMU that failed to come up and waits for it, so no process or socket outlives the error. */
async function abandon(running: RunningQemu, qmp: QmpClient | undefined, machine: QemuMachine): Promise<void> {
  qmp?.close();
  try {
    process.kill(running.pid, 'SIGKILL');
  } catch (err) {
    if (errnoCode(err) !== 'ESRCH') throw err;
  }
  await running.exited;
  await Promise.all(machineSockets(machine).map((socket) => rm(socket, { force: true })));
}

/**
 * Starts QEMU for `machine` and returns a handle once its control socket answers; the guest CPUs
 * do not run yet (-S or -incoming defer). `setUp` runs against the fresh QMP connection (resume,
 * load a state); if it fails, QEMU is killed and the error is rethrown with the VM log's tail.
 */
export async function startQemuVm(
  options: QemuVmOptions,
  setUp: (vm: QemuVm, qmp: QmpClient) => Promise<void>,
): Promise<QemuVm> {
  const { machine } = options;
  const running = await launchQemu({
    binary: options.binary,
    args: qemuArgs(machine),
    netnsPath: options.netnsPath,
    logPath: machine.consoleLogPath,
  });
  let qmp: QmpClient | undefined;
  let swapScope: SwapScope | null = null;
  try {
    qmp = await QmpClient.connect(machine.qmpSocketPath, {
      timeoutMs: QMP_CONNECT_TIMEOUT_MS,
      processExited: running.exited,
      signal: options.signal,
    });
    if (options.noSwap) {
      // Before any guest CPU runs, so guest RAM is charged to the scope from its first page on.
      swapScope = await disableSwap(running.pid);
      for (const warning of swapScope.warnings) log.warn(warning);
    }
    reportDiskErrors(qmp, machine);
    const kvm = kvmSchema.parse(await qmp.execute('query-kvm'));
    const vm = new QemuVm(qemuCapabilities(kvm.enabled), machine, running, qmp, swapScope);
    await setUp(vm, qmp);
    log.debug(`QEMU ${running.pid} runs VM ${machine.vmId} (${kvm.enabled ? 'KVM' : 'TCG'})`);
    return vm;
  } catch (err) {
    await abandon(running, qmp, machine);
    await swapScope?.release();
    const tail = await logTail(machine.consoleLogPath);
    if (tail !== '') log.debug(`VM log of ${machine.vmId} (tail):\n${tail}`);
    // QEMU explains a refused command line on stderr (in the VM log): that line is the useful part.
    const complaint = tail
      .split('\n')
      .reverse()
      .find((line) => /^(\S*qemu\S*|setpriv|nsenter): /.test(line));
    const message = err instanceof Error ? err.message : String(err);
    throw new FcvmError(
      isFcvmError(err) ? err.code : 'HYPERVISOR',
      complaint === undefined ? message : `${message} QEMU said: ${complaint}`,
      { cause: err, context: { vmId: machine.vmId, logTail: tail } },
    );
  }
}

/** What the QEMU backend can do; `hardwareAccelerated` is expected at selection and known once QEMU runs. */
export function qemuCapabilities(hardwareAccelerated: boolean): Capabilities {
  return {
    uffdRestore: false,
    diffSnapshots: false,
    metadataService: false,
    channel: 'virtio-serial',
    hardwareAccelerated,
    diskFormats: ['raw', 'qcow2'],
    kernelFormat: 'bzimage',
  };
}

/**
 * Host-side disk errors reach the guest as I/O errors (`werror=report`); the user hears the cause
 * once here, at warning level: most often the data dir's filesystem is full.
 */
function reportDiskErrors(qmp: QmpClient, machine: QemuMachine): void {
  let reported = false;
  qmp.onEvent((event, data) => {
    if (event !== 'BLOCK_IO_ERROR' || reported) return;
    reported = true;
    const error = data as { nospace?: boolean; reason?: string; device?: string; 'node-name'?: string };
    // `nospace` is set only under werror=enospc; with werror=report the reason says it.
    const nospace = error.nospace === true || /no space/i.test(error.reason ?? '');
    const cause = nospace ? 'no space is left on the filesystem of' : `${error.reason ?? 'an error'} in`;
    log.warn(
      `the disk of VM ${machine.vmId} could not be written: ${cause} ${path.dirname(machine.disks[0]?.path ?? machine.consoleLogPath)}; the guest sees I/O errors. Free space in the data directory and run the VM again.`,
    );
  });
}
