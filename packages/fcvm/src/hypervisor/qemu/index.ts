/**
 * The qemu backend: microvm guests under KVM when usable, else TCG software emulation. Snapshots are a
 * RAM file plus a device-state stream (`x-ignore-shared`); restores map the RAM file privately, so any
 * number of clones share one snapshot copy-on-write. No diff snapshots, no UFFD memory server, no
 * metadata service; the agent channel is a virtio-serial port.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import type { Capabilities, Hypervisor, RestoreSpec, VmHandle, VmSpec } from '../types.js';
import type { Accelerator, GuestMemory, QemuMachine } from './command-line.js';
import { hostTscFrequency, type TscFrequency } from './host-clock.js';
import { createMemoryFile, inspectSavedMemory } from './memory-file.js';
import { loadVmState } from './migration.js';
import { DEFAULT_QEMU_BINARY, kvmUsable, probeQemu } from './probe.js';
import { qemuCapabilities, startQemuVm } from './qemu-vm.js';

export { DEFAULT_QEMU_BINARY, MIN_QEMU_VERSION, probeQemu, type QemuProbe } from './probe.js';

/** Loading a device-state stream takes well under a second; RAM in the stream takes a few. */
const LOAD_TIMEOUT_MS = 120_000;
/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export interface QemuOptions {
  /** QEMU system emulator; default `qemu-system-x86_64` from PATH. */
  readonly binary?: string;
  /** `auto` (default): KVM when /dev/kvm is usable, falling back to TCG; `tcg` forces emulation. */
  readonly accel?: 'auto' | 'kvm' | 'tcg';
}

function socketPath(vmDir: string, name: string): string {
  const socket = path.join(vmDir, name);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
    throw new FcvmError(
      'CONFIG',
      `The VM directory ${vmDir} is too long for a Unix socket path; use a shorter data directory (FCVM_DATA_DIR).`,
    );
  }
  return socket;
}

class QemuHypervisor implements Hypervisor {
  readonly kind = 'qemu';

  constructor(
    private readonly binary: string,
    private readonly accel: Accelerator,
    private readonly tsc: TscFrequency | null,
    readonly capabilities: Capabilities,
  ) {}

  private machine(spec: VmSpec | RestoreSpec, memory: GuestMemory, start: QemuMachine['start']): QemuMachine {
    return {
      vmId: spec.vmId,
      kernelPath: spec.kernelPath,
      initrdPath: spec.initrdPath,
      bootArgs: spec.bootArgs,
      vcpus: spec.vcpus,
      memoryMib: spec.memoryMib,
      disks: spec.disks,
      net: spec.net,
      consoleLogPath: spec.consoleLogPath,
      memory,
      accel: this.accel,
      tsc: this.tsc,
      qmpSocketPath: socketPath(spec.vmDir, 'qmp.sock'),
      agentSocketPath: socketPath(spec.vmDir, 'agent.sock'),
      migrationSocketPath: socketPath(spec.vmDir, 'migration.sock'),
      start,
    };
  }

  async boot(spec: VmSpec, signal?: AbortSignal): Promise<VmHandle> {
    let memory: GuestMemory;
    if (spec.memoryFilePath !== null) {
      if (spec.hugepages) {
        log.warn(
          `VM ${spec.vmId}: the qemu backend keeps snapshot-able RAM in a regular file; hugepages are not used.`,
        );
      }
      await createMemoryFile(spec.memoryFilePath, spec.memoryMib);
      memory = { kind: 'file', path: spec.memoryFilePath, shared: true };
    } else {
      memory = spec.hugepages ? { kind: 'hugetlb' } : { kind: 'anonymous' };
    }
    const machine = this.machine(spec, memory, 'paused');
    try {
      return await startQemuVm(
        { binary: this.binary, machine, netnsPath: spec.netnsPath, noSwap: spec.noSwap, signal },
        async (_vm, qmp) => {
          await qmp.execute('cont');
        },
      );
    } catch (err) {
      // The RAM file was created above for this VM alone: without the VM it is just a large empty file.
      if (spec.memoryFilePath !== null) await rm(spec.memoryFilePath, { force: true });
      throw err;
    }
  }

  async restore(spec: RestoreSpec, signal?: AbortSignal): Promise<VmHandle> {
    if (spec.memory.backend === 'uffd') {
      throw new FcvmError(
        'USAGE',
        'Restoring from a memory server (UFFD) is not supported by the qemu backend; restore from the snapshot memory file.',
      );
    }
    const saved = await inspectSavedMemory(spec.memory.path, spec.memoryMib);
    let memory: GuestMemory;
    if (saved.kind === 'file') {
      if (spec.hugepages) {
        log.warn(`VM ${spec.vmId}: a clone maps the snapshot memory file; hugepages are not used.`);
      }
      // Private mapping: the clone reads the snapshot's pages and keeps its own writes to itself.
      memory = { kind: 'file', path: saved.path, shared: false };
    } else {
      memory = spec.hugepages ? { kind: 'hugetlb' } : { kind: 'anonymous' };
    }
    const machine = this.machine(spec, memory, 'incoming');
    return startQemuVm(
      { binary: this.binary, machine, netnsPath: spec.netnsPath, noSwap: spec.noSwap, signal },
      async (vm, qmp) => {
        await loadVmState(qmp, spec.vmstatePath, {
          ignoreSharedRam: saved.kind === 'file',
          socketPath: machine.migrationSocketPath,
          timeoutMs: LOAD_TIMEOUT_MS,
          processExited: vm.exited,
          signal,
        });
        if (spec.resume) await qmp.execute('cont');
      },
    );
  }
}

/** The qemu backend, or a MISSING_HOST_TOOL error naming what is wrong with the QEMU install. */
export async function createQemu(options: QemuOptions = {}): Promise<Hypervisor> {
  const probe = await probeQemu(options.binary ?? DEFAULT_QEMU_BINARY);
  if (!probe.available) throw new FcvmError('MISSING_HOST_TOOL', `QEMU is not usable: ${probe.reason}.`);
  const requested = options.accel ?? 'auto';
  const kvm = requested !== 'tcg' && (await kvmUsable());
  if (requested === 'kvm' && !kvm) {
    throw new FcvmError('USAGE', 'KVM was requested but /dev/kvm is not usable by this user; use accel auto or tcg.');
  }
  const accel: Accelerator = requested === 'kvm' ? 'kvm' : kvm ? 'kvm-or-tcg' : 'tcg';
  // Needed under TCG (see host-clock.ts) and harmless under KVM, where it only skips a calibration.
  const tsc = hostTscFrequency();
  if (tsc === null && accel !== 'kvm') {
    log.warn('The host TSC rate is unknown: guests under TCG may hang while calibrating their clock.');
  } else if (tsc !== null && !tsc.exact) {
    log.debug(`host TSC rate unknown; booting with the current clock speed ${tsc.khz} kHz and no tsc=reliable`);
  }
  log.debug(`qemu backend: ${probe.binary} ${probe.version.text}, accel ${accel}`);
  // The per-VM handle reports what QEMU actually got (query-kvm); this is the expectation.
  return new QemuHypervisor(probe.binary, accel, tsc, qemuCapabilities(kvm));
}
