/**
 * Builds request bodies from fcvm's own options for one Firecracker version. A field the version
 * does not know is never produced: either an older equivalent is used (`enable_diff_snapshots`
 * before v1.13) or asking for it fails with one sentence naming the release that added it.
 */
import { FcvmError } from '../../errors.js';
import type {
  ActionBody,
  ActionType,
  BalloonBody,
  BalloonUpdateBody,
  BootSourceBody,
  DriveBody,
  DrivePatchBody,
  EntropyBody,
  LOG_LEVELS,
  LoggerBody,
  MachineConfigBody,
  MetricsBody,
  MmdsConfigBody,
  NetworkInterfaceBody,
  RateLimiter,
  SnapshotCreateBody,
  SnapshotLoadBody,
  VmStateBody,
  VsockBody,
} from './api-schemas.js';
import { type FirecrackerFeature, type FirecrackerVersion, featureSince, formatVersion, supports } from './version.js';

function requireFeature(version: FirecrackerVersion, feature: FirecrackerFeature, what: string): void {
  if (supports(version, feature)) return;
  throw new FcvmError(
    'HYPERVISOR',
    `Firecracker ${formatVersion(version)} does not support ${what}; it needs v${formatVersion(featureSince(feature))} or newer.`,
  );
}

export function bootSourceBody(options: {
  kernelPath: string;
  initrdPath: string | null;
  bootArgs: string;
}): BootSourceBody {
  return {
    kernel_image_path: options.kernelPath,
    ...(options.initrdPath === null ? {} : { initrd_path: options.initrdPath }),
    boot_args: options.bootArgs,
  };
}

export function machineConfigBody(options: {
  vcpus: number;
  memoryMib: number;
  hugepages: boolean;
  trackDirtyPages: boolean;
}): MachineConfigBody {
  if (options.hugepages && options.memoryMib % 2 !== 0) {
    throw new FcvmError(
      'USAGE',
      `Guest memory backed by 2 MiB huge pages must be an even number of MiB, not ${options.memoryMib}.`,
    );
  }
  if (!Number.isInteger(options.vcpus) || options.vcpus < 1 || options.vcpus > 32) {
    throw new FcvmError('USAGE', `Firecracker supports 1 to 32 vCPUs, not ${options.vcpus}.`);
  }
  return {
    vcpu_count: options.vcpus,
    mem_size_mib: options.memoryMib,
    smt: false,
    track_dirty_pages: options.trackDirtyPages,
    // 'None' is the default; only the hugepage case is spelled out.
    ...(options.hugepages ? { huge_pages: '2M' as const } : {}),
  };
}

export function driveBody(options: {
  id: string;
  path: string;
  readOnly: boolean;
  isRoot: boolean;
  cacheType?: DriveBody['cache_type'];
  ioEngine?: DriveBody['io_engine'];
  rateLimiter?: RateLimiter;
}): DriveBody {
  return {
    drive_id: options.id,
    path_on_host: options.path,
    is_root_device: options.isRoot,
    is_read_only: options.readOnly,
    ...(options.cacheType ? { cache_type: options.cacheType } : {}),
    ...(options.ioEngine ? { io_engine: options.ioEngine } : {}),
    ...(options.rateLimiter ? { rate_limiter: options.rateLimiter } : {}),
  };
}

export function drivePatchBody(options: { id: string; path?: string; rateLimiter?: RateLimiter }): DrivePatchBody {
  return {
    drive_id: options.id,
    ...(options.path === undefined ? {} : { path_on_host: options.path }),
    ...(options.rateLimiter ? { rate_limiter: options.rateLimiter } : {}),
  };
}

export function networkInterfaceBody(
  version: FirecrackerVersion,
  options: {
    ifaceId: string;
    tapDevice: string;
    guestMac?: string;
    mtu?: number;
    rxRateLimiter?: RateLimiter;
    txRateLimiter?: RateLimiter;
  },
): NetworkInterfaceBody {
  if (options.mtu !== undefined) requireFeature(version, 'networkMtu', 'advertising an MTU to the guest');
  return {
    iface_id: options.ifaceId,
    host_dev_name: options.tapDevice,
    ...(options.guestMac === undefined ? {} : { guest_mac: options.guestMac }),
    ...(options.mtu === undefined ? {} : { mtu: options.mtu }),
    ...(options.rxRateLimiter ? { rx_rate_limiter: options.rxRateLimiter } : {}),
    ...(options.txRateLimiter ? { tx_rate_limiter: options.txRateLimiter } : {}),
  };
}

/** The guest's vsock CID. 0-2 are reserved (2 is the host), so every VM uses 3: each has its own device. */
export const GUEST_CID = 3;

export function vsockBody(options: { udsPath: string }): VsockBody {
  // `vsock_id` is deprecated and marks the response `Deprecation: true`: never sent.
  return { guest_cid: GUEST_CID, uds_path: options.udsPath };
}

export const MMDS_IPV4_ADDRESS = '169.254.169.254';

export function mmdsConfigBody(
  version: FirecrackerVersion,
  options: { networkInterfaces: readonly string[]; imdsCompat?: boolean },
): MmdsConfigBody {
  if (options.imdsCompat !== undefined) requireFeature(version, 'imdsCompat', 'the IMDS-compatible MMDS format');
  return {
    version: 'V2',
    network_interfaces: [...options.networkInterfaces],
    ipv4_address: MMDS_IPV4_ADDRESS,
    ...(options.imdsCompat === undefined ? {} : { imds_compat: options.imdsCompat }),
  };
}

export function entropyBody(options: { rateLimiter?: RateLimiter } = {}): EntropyBody {
  return options.rateLimiter ? { rate_limiter: options.rateLimiter } : {};
}

export function balloonBody(
  version: FirecrackerVersion,
  options: {
    amountMib: number;
    deflateOnOom: boolean;
    statsPollingIntervalS?: number;
    freePageHinting?: boolean;
    freePageReporting?: boolean;
  },
): BalloonBody {
  if (options.freePageHinting !== undefined || options.freePageReporting !== undefined) {
    requireFeature(version, 'balloonFreePage', 'balloon free page hinting and reporting');
  }
  return {
    amount_mib: options.amountMib,
    deflate_on_oom: options.deflateOnOom,
    ...(options.statsPollingIntervalS === undefined ? {} : { stats_polling_interval_s: options.statsPollingIntervalS }),
    ...(options.freePageHinting === undefined ? {} : { free_page_hinting: options.freePageHinting }),
    ...(options.freePageReporting === undefined ? {} : { free_page_reporting: options.freePageReporting }),
  };
}

export function balloonUpdateBody(options: { amountMib: number }): BalloonUpdateBody {
  return { amount_mib: options.amountMib };
}

export function loggerBody(options: {
  logPath?: string;
  level?: (typeof LOG_LEVELS)[number];
  showLevel?: boolean;
  showLogOrigin?: boolean;
  module?: string;
}): LoggerBody {
  return {
    ...(options.logPath === undefined ? {} : { log_path: options.logPath }),
    ...(options.level === undefined ? {} : { level: options.level }),
    ...(options.showLevel === undefined ? {} : { show_level: options.showLevel }),
    ...(options.showLogOrigin === undefined ? {} : { show_log_origin: options.showLogOrigin }),
    ...(options.module === undefined ? {} : { module: options.module }),
  };
}

export function metricsBody(options: { metricsPath: string }): MetricsBody {
  return { metrics_path: options.metricsPath };
}

export function actionBody(action: ActionType): ActionBody {
  return { action_type: action };
}

export function vmStateBody(state: 'Paused' | 'Resumed'): VmStateBody {
  return { state };
}

export function snapshotCreateBody(options: {
  vmstatePath: string;
  memoryPath: string;
  kind: 'full' | 'diff';
}): SnapshotCreateBody {
  return {
    snapshot_path: options.vmstatePath,
    mem_file_path: options.memoryPath,
    snapshot_type: options.kind === 'diff' ? 'Diff' : 'Full',
  };
}

export interface SnapshotLoadOptions {
  readonly vmstatePath: string;
  readonly memory:
    | { readonly backend: 'file'; readonly path: string }
    | { readonly backend: 'uffd'; readonly socketPath: string };
  readonly trackDirtyPages: boolean;
  readonly resume: boolean;
  /** Re-point interfaces to other TAP devices (v1.12+). */
  readonly networkOverrides?: ReadonlyArray<{ readonly ifaceId: string; readonly tapDevice: string }>;
  /** Listen for vsock on another path than the one recorded in the snapshot (v1.16+). */
  readonly vsockUdsPath?: string;
}

export function snapshotLoadBody(version: FirecrackerVersion, options: SnapshotLoadOptions): SnapshotLoadBody {
  if (options.networkOverrides !== undefined && options.networkOverrides.length > 0) {
    requireFeature(version, 'networkOverrides', 'restoring a network interface onto another TAP device');
  }
  if (options.vsockUdsPath !== undefined) {
    requireFeature(version, 'vsockOverride', 'restoring the vsock device onto another socket path');
  }
  const memBackend =
    options.memory.backend === 'file'
      ? { backend_type: 'File' as const, backend_path: options.memory.path }
      : { backend_type: 'Uffd' as const, backend_path: options.memory.socketPath };
  // Before v1.13 the field was called enable_diff_snapshots, and track_dirty_pages was an unknown field.
  const dirtyTracking = supports(version, 'trackDirtyPagesOnLoad')
    ? { track_dirty_pages: options.trackDirtyPages }
    : { enable_diff_snapshots: options.trackDirtyPages };
  return {
    snapshot_path: options.vmstatePath,
    mem_backend: memBackend,
    ...dirtyTracking,
    resume_vm: options.resume,
    ...(options.networkOverrides !== undefined && options.networkOverrides.length > 0
      ? {
          network_overrides: options.networkOverrides.map((o) => ({ iface_id: o.ifaceId, host_dev_name: o.tapDevice })),
        }
      : {}),
    ...(options.vsockUdsPath === undefined ? {} : { vsock_override: { uds_path: options.vsockUdsPath } }),
  };
}
