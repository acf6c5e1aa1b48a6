/**
 * The Firecracker backend: cold boots (configure over the API, then InstanceStart) and restores
 * (a fresh process, then /snapshot/load), in the order of firecracker-protocols.md §3.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { disableSwap, type SwapScope } from '../../cgroup/swap-scope.js';
import { FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import type { Hypervisor, RestoreSpec, VmHandle, VmSpec } from '../types.js';
import {
  bootSourceBody,
  driveBody,
  drivePatchBody,
  entropyBody,
  loggerBody,
  machineConfigBody,
  mmdsConfigBody,
  networkInterfaceBody,
  snapshotLoadBody,
  vsockBody,
} from './api-bodies.js';
import { type CallOptions, type FirecrackerApiClient, FirecrackerApiError } from './api-client.js';
import { RESOURCE_ID_PATTERN, TAP_NAME_MAX } from './api-schemas.js';
import {
  API_SOCKET_NAME,
  assertSocketPathFits,
  type FirecrackerProcess,
  removeSocket,
  startFirecrackerProcess,
  VSOCK_SOCKET_NAME,
} from './process.js';
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

/** Room for `_<port>` after the vsock path: guest-initiated connections go to `<uds_path>_<port>`. */
const VSOCK_PORT_SUFFIX_MAX = '_4294967295'.length;

function checkCommonSpec(spec: VmSpec | RestoreSpec): void {
  assertSocketPathFits(join(spec.vmDir, API_SOCKET_NAME));
  assertSocketPathFits(join(spec.vmDir, VSOCK_SOCKET_NAME), VSOCK_PORT_SUFFIX_MAX);
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

/** `--no-swap`: the VMM's own cgroup scope with swap off, before any guest memory is touched. */
async function noSwapScope(spec: VmSpec | RestoreSpec, pid: number): Promise<SwapScope | null> {
  if (!spec.noSwap) return null;
  const scope = await disableSwap(pid);
  for (const warning of scope.warnings) log.warn(warning);
  return scope;
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
      // The policy's hugepage guard (policy.ts) holds at boot too: dirty logging would split the
      // guest's 2 MiB mappings into 4 KiB pages.
      trackDirtyPages: spec.trackDirtyPages && !spec.hugepages,
    });
    const metadata =
      spec.net && spec.metadata !== undefined && spec.metadata !== null ? toMmdsContents(spec.metadata) : null;
    const vsockPath = join(spec.vmDir, VSOCK_SOCKET_NAME);
    // Firecracker binds the vsock socket during PUT /vsock and fails if the path exists.
    removeSocket(vsockPath);

    const { vmm, client } = await this.start(spec, signal);
    const call: CallOptions = { signal };
    let swapScope: SwapScope | null = null;
    try {
      swapScope = await noSwapScope(spec, vmm.pid);
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
      await this.abandon(vmm, vsockPath, swapScope);
      throw err;
    }
    log.debug(`VM ${spec.vmId}: firecracker ${vmm.pid} booted (v${formatVersion(this.version)})`);
    return vmHandle(vmm, client, spec, { vsockPath, swapScope, paused: false });
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
    // The vsock path (ours, or the snapshot's) must not exist when the load binds it.
    removeSocket(vsockPath);
    // Disks are re-pointed to the clone's own files after the load; the guest must not run before.
    const resumeOnLoad = spec.resume && spec.disks.length === 0;
    const body = this.snapshotLoad(spec, vsockPath, resumeOnLoad);

    const { vmm, client } = await this.start(spec, signal);
    let swapScope: SwapScope | null = null;
    try {
      swapScope = await noSwapScope(spec, vmm.pid);
      await vmm.guard('configuration', () =>
        client.putLogger(loggerBody({ level: 'Info', showLevel: true }), { signal }),
      );
    } catch (err) {
      await this.abandon(vmm, vsockPath, swapScope);
      throw err;
    }
    try {
      await client.loadSnapshot(body, { signal, timeoutMs: SNAPSHOT_LOAD_TIMEOUT_MS });
    } catch (err) {
      // Firecracker ends itself after any failed load; a process that lingers is killed.
      const exit = await vmm.exitWithin(FAILED_LOAD_EXIT_MS);
      await this.abandon(vmm, vsockPath, swapScope);
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
      await vmm.guard('post-restore configuration', async () => {
        // The snapshot records each drive by the path it had; the clone gets the files its spec names.
        for (const disk of spec.disks) {
          await client.patchDrive(drivePatchBody({ id: disk.id, path: disk.path }), { signal });
        }
        // The MMDS store is not part of a snapshot: fill it again.
        if (metadata) await client.putMmds(metadata, { signal });
        if (spec.resume && !resumeOnLoad) await client.setVmState('Resumed', { signal, timeoutMs: 30_000 });
      });
    } catch (err) {
      await this.abandon(vmm, vsockPath, swapScope);
      throw err;
    }
    log.debug(`VM ${spec.vmId}: firecracker ${vmm.pid} restored from ${spec.vmstatePath}`);
    return vmHandle(vmm, client, spec, { vsockPath, swapScope, paused: !spec.resume });
  }

  /** The snapshot load request: vsock and tap moved to the clone's where this Firecracker can. */
  private snapshotLoad(
    spec: RestoreSpec,
    vsockPath: string,
    resumeOnLoad: boolean,
  ): ReturnType<typeof snapshotLoadBody> {
    const canMoveVsock = supports(this.version, 'vsockOverride');
    const canMoveTap = supports(this.version, 'networkOverrides');
    if (!canMoveVsock) {
      log.debug(
        `Firecracker ${formatVersion(this.version)} restores vsock on the path recorded in the snapshot; ${vsockPath} must be that path`,
      );
    }
    return snapshotLoadBody(this.version, {
      vmstatePath: spec.vmstatePath,
      memory: spec.memory,
      trackDirtyPages: spec.trackDirtyPages,
      resume: resumeOnLoad,
      ...(spec.net && canMoveTap
        ? { networkOverrides: [{ ifaceId: GUEST_IFACE_ID, tapDevice: spec.net.tapDevice }] }
        : {}),
      ...(canMoveVsock ? { vsockUdsPath: vsockPath } : {}),
    });
  }

  /** Ends a process that never became a VM handle and removes its sockets. */
  private async abandon(vmm: FirecrackerProcess, vsockPath: string, swapScope: SwapScope | null): Promise<void> {
    await vmm.killAndWait();
    removeSocket(vmm.apiSocketPath);
    removeSocket(vsockPath);
    await swapScope?.release();
  }
}

/** The handle of a Firecracker process that booted or restored a VM. */
function vmHandle(
  vmm: FirecrackerProcess,
  client: FirecrackerApiClient,
  spec: Pick<VmSpec, 'vmId' | 'vmDir' | 'memoryMib' | 'net'>,
  state: { vsockPath: string; swapScope: SwapScope | null; paused: boolean },
): VmHandle {
  return new FirecrackerVm(vmm, client, {
    vmId: spec.vmId,
    vmDir: spec.vmDir,
    memoryMib: spec.memoryMib,
    hasMetadataService: spec.net !== null,
    ...state,
  });
}
