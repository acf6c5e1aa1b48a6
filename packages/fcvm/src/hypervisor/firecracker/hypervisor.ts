/**
 * The Firecracker backend: cold boots (configure over the API, then InstanceStart) and restores
 * (a fresh process, then /snapshot/load), in the order of firecracker-protocols.md §3.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import type { Hypervisor, RestoreSpec, VmHandle, VmSpec } from '../types.js';
import {
  bootSourceBody,
  driveBody,
  entropyBody,
  loggerBody,
  machineConfigBody,
  mmdsConfigBody,
  networkInterfaceBody,
  snapshotLoadBody,
  vsockBody,
} from './api-bodies.js';
import { type CallOptions, FirecrackerApiError } from './api-client.js';
import { RESOURCE_ID_PATTERN, TAP_NAME_MAX } from './api-schemas.js';
import { type FirecrackerProcess, removeSocket, startFirecrackerProcess, VSOCK_SOCKET_NAME } from './process.js';
import { type FirecrackerVersion, formatVersion, supports } from './version.js';
import { FIRECRACKER_CAPABILITIES, FirecrackerVm, toMmdsContents } from './vm-handle.js';

/** The guest network interface; MMDS is bound to it. */
export const GUEST_IFACE_ID = 'eth0';

/**
 * Kernel arguments Firecracker guests need: the serial console (into the VM log), `reboot=k` so a
 * guest reboot or Ctrl-Alt-Del ends Firecracker, no PCI probing (virtio-mmio only), and the i8042
 * shortcuts Firecracker itself defaults to (it emulates only what Ctrl-Alt-Del needs).
 */
export const FIRECRACKER_BOOT_ARGS = [
  'console=ttyS0',
  'reboot=k',
  'panic=1',
  'pci=off',
  'i8042.noaux',
  'i8042.nomux',
  'i8042.dumbkbd',
];

export function firecrackerBootArgs(callerArgs: string): string {
  return [...FIRECRACKER_BOOT_ARGS, callerArgs.trim()].filter((arg) => arg !== '').join(' ');
}

const INSTANCE_START_TIMEOUT_MS = 30_000;
/** Loading maps memory lazily, but a slow disk or a UFFD server that is still warming up take time. */
const SNAPSHOT_LOAD_TIMEOUT_MS = 120_000;
/** Firecracker exits right after answering a failed load; give it this long before killing it. */
const FAILED_LOAD_EXIT_MS = 2000;

export interface FirecrackerHypervisorOptions {
  readonly binary: string;
  readonly version: FirecrackerVersion;
  /** How long to wait for a new process's API socket. */
  readonly socketWaitMs?: number;
}

function checkCommonSpec(spec: VmSpec | RestoreSpec): void {
  if (spec.net && spec.net.tapDevice.length > TAP_NAME_MAX) {
    throw new FcvmError('USAGE', `TAP device name ${spec.net.tapDevice} is longer than ${TAP_NAME_MAX} characters.`);
  }
  for (const disk of spec.disks) {
    if (!RESOURCE_ID_PATTERN.test(disk.id)) {
      throw new FcvmError(
        'USAGE',
        `Disk id ${JSON.stringify(disk.id)} may contain only letters, digits and _ for Firecracker.`,
      );
    }
    if (disk.format !== 'raw') {
      throw new FcvmError('USAGE', `Firecracker accepts raw disk images only, but disk ${disk.id} is ${disk.format}.`);
    }
  }
}

export class FirecrackerHypervisor implements Hypervisor {
  readonly kind = 'firecracker' as const;
  readonly capabilities = FIRECRACKER_CAPABILITIES;
  readonly binary: string;
  readonly version: FirecrackerVersion;
  private readonly socketWaitMs: number | undefined;

  constructor(options: FirecrackerHypervisorOptions) {
    this.binary = options.binary;
    this.version = options.version;
    this.socketWaitMs = options.socketWaitMs;
  }

  private start(spec: VmSpec | RestoreSpec, signal: AbortSignal | undefined) {
    return startFirecrackerProcess(
      {
        binary: this.binary,
        vmId: spec.vmId,
        vmDir: spec.vmDir,
        consoleLogPath: spec.consoleLogPath,
        netnsPath: spec.netnsPath,
      },
      this.version,
      { signal, ...(this.socketWaitMs === undefined ? {} : { socketWaitMs: this.socketWaitMs }) },
    );
  }

  async boot(spec: VmSpec, signal?: AbortSignal): Promise<VmHandle> {
    checkCommonSpec(spec);
    const machine = machineConfigBody({
      vcpus: spec.vcpus,
      memoryMib: spec.memoryMib,
      hugepages: spec.hugepages,
      trackDirtyPages: spec.trackDirtyPages,
    });
    const metadata =
      spec.net && spec.metadata !== undefined && spec.metadata !== null ? toMmdsContents(spec.metadata) : null;
    const vsockPath = join(spec.vmDir, VSOCK_SOCKET_NAME);
    // Firecracker binds the vsock socket during PUT /vsock and fails if the path exists.
    removeSocket(vsockPath);

    const { vmm, client } = await this.start(spec, signal);
    const call: CallOptions = { signal };
    try {
      await vmm.guard('configuration', async () => {
        await client.putLogger(loggerBody({ level: 'Info', showLevel: true }), call);
        await client.putMachineConfig(machine, call);
        await client.putBootSource(
          bootSourceBody({
            kernelPath: spec.kernelPath,
            initrdPath: spec.initrdPath,
            bootArgs: firecrackerBootArgs(spec.bootArgs),
          }),
          call,
        );
        for (const disk of spec.disks) {
          await client.putDrive(
            driveBody({ id: disk.id, path: disk.path, readOnly: disk.readOnly, isRoot: disk.id === 'rootfs' }),
            call,
          );
        }
        if (spec.net) {
          await client.putNetworkInterface(
            networkInterfaceBody(this.version, {
              ifaceId: GUEST_IFACE_ID,
              tapDevice: spec.net.tapDevice,
              guestMac: spec.net.guestMac,
            }),
            call,
          );
          await client.putMmdsConfig(mmdsConfigBody(this.version, { networkInterfaces: [GUEST_IFACE_ID] }), call);
        }
        await client.putVsock(vsockBody({ udsPath: vsockPath }), call);
        if (metadata) await client.putMmds(metadata, call);
        await client.putEntropy(entropyBody(), call);
      });
      await vmm.guard('InstanceStart', () =>
        client.action('InstanceStart', { signal, timeoutMs: INSTANCE_START_TIMEOUT_MS }),
      );
    } catch (err) {
      await this.abandon(vmm, vsockPath);
      throw err;
    }
    log.debug(`VM ${spec.vmId}: firecracker ${vmm.pid} booted (v${formatVersion(this.version)})`);
    return new FirecrackerVm(vmm, client, {
      vmId: spec.vmId,
      vmDir: spec.vmDir,
      memoryMib: spec.memoryMib,
      hasMetadataService: spec.net !== null,
      vsockPath,
      paused: false,
    });
  }

  async restore(spec: RestoreSpec, signal?: AbortSignal): Promise<VmHandle> {
    checkCommonSpec(spec);
    if (spec.hugepages && spec.memory.backend === 'file') {
      throw new FcvmError(
        'USAGE',
        'A hugepage snapshot can only be restored through a UFFD memory server, because Firecracker cannot map hugetlbfs memory from a file.',
      );
    }
    if (!existsSync(spec.vmstatePath)) {
      throw new FcvmError('NOT_FOUND', `Snapshot state file ${spec.vmstatePath} does not exist.`);
    }
    const metadata =
      spec.net && spec.metadata !== undefined && spec.metadata !== null ? toMmdsContents(spec.metadata) : null;
    const vsockPath = join(spec.vmDir, VSOCK_SOCKET_NAME);
    const canMoveVsock = supports(this.version, 'vsockOverride');
    const canMoveTap = supports(this.version, 'networkOverrides');
    if (!canMoveVsock) {
      log.debug(
        `Firecracker ${formatVersion(this.version)} restores vsock on the path recorded in the snapshot; ${vsockPath} must be that path`,
      );
    }
    // The vsock path (ours, or the snapshot's) must not exist when the load binds it.
    removeSocket(vsockPath);
    const body = snapshotLoadBody(this.version, {
      vmstatePath: spec.vmstatePath,
      memory: spec.memory,
      trackDirtyPages: spec.trackDirtyPages,
      resume: spec.resume,
      ...(spec.net && canMoveTap
        ? { networkOverrides: [{ ifaceId: GUEST_IFACE_ID, tapDevice: spec.net.tapDevice }] }
        : {}),
      ...(canMoveVsock ? { vsockUdsPath: vsockPath } : {}),
    });

    const { vmm, client } = await this.start(spec, signal);
    try {
      await vmm.guard('configuration', () =>
        client.putLogger(loggerBody({ level: 'Info', showLevel: true }), { signal }),
      );
    } catch (err) {
      await this.abandon(vmm, vsockPath);
      throw err;
    }
    try {
      await client.loadSnapshot(body, { signal, timeoutMs: SNAPSHOT_LOAD_TIMEOUT_MS });
    } catch (err) {
      // Firecracker ends itself after any failed load; a process that lingers is killed.
      const exit = await vmm.exitWithin(FAILED_LOAD_EXIT_MS);
      await this.abandon(vmm, vsockPath);
      const reason = (err instanceof FirecrackerApiError ? err.faultMessage : (err as Error).message)
        .trim()
        .replace(/\.$/, '');
      throw new FcvmError(
        'HYPERVISOR',
        `Firecracker could not restore VM ${spec.vmId} from ${spec.vmstatePath}: ${reason}; its output is in ${spec.consoleLogPath}.`,
        { cause: err, context: { exit: exit ?? vmm.exit } },
      );
    }
    try {
      // The MMDS store is not part of a snapshot: fill it again.
      if (metadata) await vmm.guard('metadata update', () => client.putMmds(metadata, { signal }));
    } catch (err) {
      await this.abandon(vmm, vsockPath);
      throw err;
    }
    log.debug(`VM ${spec.vmId}: firecracker ${vmm.pid} restored from ${spec.vmstatePath}`);
    return new FirecrackerVm(vmm, client, {
      vmId: spec.vmId,
      vmDir: spec.vmDir,
      memoryMib: spec.memoryMib,
      hasMetadataService: spec.net !== null,
      vsockPath,
      paused: !spec.resume,
    });
  }

  /** Ends a process that never became a VM handle and removes its sockets. */
  private async abandon(vmm: FirecrackerProcess, vsockPath: string): Promise<void> {
    await vmm.killAndWait();
    removeSocket(vmm.apiSocketPath);
    removeSocket(vsockPath);
  }
}
