/**
 * The request bodies fcvm sends to Firecracker, as strict zod schemas: the project's own contract
 * for the API. Firecracker rejects unknown fields, so every schema is strict and every enum is a
 * literal union. The conformance test checks each body these schemas admit against Firecracker's
 * published spec (shared/firecracker/firecracker.yaml) with additional properties forbidden.
 *
 * Fields that only some releases know are optional here; api-bodies.ts decides, per version,
 * whether they are sent.
 */
import { z } from 'zod';

/** Ids in paths (`/drives/{id}`, `/network-interfaces/{id}`): alphanumerics and `_` only. */
export const RESOURCE_ID_PATTERN = /^[A-Za-z0-9_]+$/;
const ResourceId = z.string().regex(RESOURCE_ID_PATTERN);

const u32 = z.number().int().min(0).max(0xffff_ffff);
const u64 = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const TokenBucketSchema = z.strictObject({
  size: u64,
  one_time_burst: u64.optional(),
  refill_time: u64,
});

export const RateLimiterSchema = z.strictObject({
  bandwidth: TokenBucketSchema.optional(),
  ops: TokenBucketSchema.optional(),
});

export const BootSourceSchema = z.strictObject({
  kernel_image_path: z.string().min(1),
  initrd_path: z.string().min(1).optional(),
  boot_args: z.string().optional(),
});

export const HUGE_PAGES = ['None', '2M'] as const;

export const MachineConfigSchema = z.strictObject({
  vcpu_count: z.number().int().min(1).max(32),
  mem_size_mib: z.number().int().min(1),
  smt: z.boolean().optional(),
  track_dirty_pages: z.boolean().optional(),
  huge_pages: z.enum(HUGE_PAGES).optional(),
});

export const CACHE_TYPES = ['Unsafe', 'Writeback'] as const;
export const IO_ENGINES = ['Sync', 'Async'] as const;

export const DriveSchema = z.strictObject({
  drive_id: ResourceId,
  is_root_device: z.boolean(),
  is_read_only: z.boolean(),
  path_on_host: z.string().min(1),
  partuuid: z.string().min(1).optional(),
  cache_type: z.enum(CACHE_TYPES).optional(),
  io_engine: z.enum(IO_ENGINES).optional(),
  rate_limiter: RateLimiterSchema.optional(),
});

export const DrivePatchSchema = z.strictObject({
  drive_id: ResourceId,
  path_on_host: z.string().min(1).optional(),
  rate_limiter: RateLimiterSchema.optional(),
});

/** Linux interface names are at most 15 bytes. */
export const TAP_NAME_MAX = 15;

export const NetworkInterfaceSchema = z.strictObject({
  iface_id: ResourceId,
  host_dev_name: z.string().min(1).max(TAP_NAME_MAX),
  guest_mac: z
    .string()
    .regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/)
    .optional(),
  mtu: z.number().int().min(68).max(65535).optional(),
  rx_rate_limiter: RateLimiterSchema.optional(),
  tx_rate_limiter: RateLimiterSchema.optional(),
});

export const VsockSchema = z.strictObject({
  guest_cid: z.number().int().min(3).max(0xffff_ffff),
  uds_path: z.string().min(1),
});

export const MMDS_VERSIONS = ['V1', 'V2'] as const;

export const MmdsConfigSchema = z.strictObject({
  /** fcvm always asks for V2: omitting the version means the deprecated V1. */
  version: z.literal('V2'),
  network_interfaces: z.array(ResourceId).min(1),
  ipv4_address: z
    .string()
    .regex(/^169\.254\.\d{1,3}\.\d{1,3}$/)
    .optional(),
  imds_compat: z.boolean().optional(),
});

/** The MMDS store is any JSON object; PUT replaces it. */
export const MmdsContentsSchema = z.record(z.string(), z.json());

export const EntropySchema = z.strictObject({
  rate_limiter: RateLimiterSchema.optional(),
});

export const BalloonSchema = z.strictObject({
  amount_mib: u32,
  deflate_on_oom: z.boolean(),
  stats_polling_interval_s: z.number().int().min(0).max(0xffff).optional(),
  free_page_hinting: z.boolean().optional(),
  free_page_reporting: z.boolean().optional(),
});

export const BalloonUpdateSchema = z.strictObject({
  amount_mib: u32,
});

export const LOG_LEVELS = ['Error', 'Warning', 'Info', 'Debug', 'Trace', 'Off'] as const;

export const LoggerSchema = z.strictObject({
  log_path: z.string().min(1).optional(),
  level: z.enum(LOG_LEVELS).optional(),
  show_level: z.boolean().optional(),
  show_log_origin: z.boolean().optional(),
  module: z.string().min(1).optional(),
});

export const MetricsSchema = z.strictObject({
  metrics_path: z.string().min(1),
});

export const ACTION_TYPES = ['InstanceStart', 'SendCtrlAltDel', 'FlushMetrics'] as const;
export type ActionType = (typeof ACTION_TYPES)[number];

export const ActionSchema = z.strictObject({
  action_type: z.enum(ACTION_TYPES),
});

export const VM_STATES = ['Paused', 'Resumed'] as const;

export const VmStateSchema = z.strictObject({
  state: z.enum(VM_STATES),
});

export const SNAPSHOT_TYPES = ['Full', 'Diff'] as const;

export const SnapshotCreateSchema = z.strictObject({
  snapshot_path: z.string().min(1),
  mem_file_path: z.string().min(1),
  snapshot_type: z.enum(SNAPSHOT_TYPES),
});

export const MEMORY_BACKEND_TYPES = ['File', 'Uffd'] as const;

export const MemoryBackendSchema = z.strictObject({
  backend_type: z.enum(MEMORY_BACKEND_TYPES),
  backend_path: z.string().min(1),
});

export const NetworkOverrideSchema = z.strictObject({
  iface_id: ResourceId,
  host_dev_name: z.string().min(1).max(TAP_NAME_MAX),
});

export const SnapshotLoadSchema = z.strictObject({
  snapshot_path: z.string().min(1),
  /** fcvm always uses `mem_backend`; the deprecated `mem_file_path` is never sent. */
  mem_backend: MemoryBackendSchema,
  /** v1.13+. */
  track_dirty_pages: z.boolean().optional(),
  /** Before v1.13 the only name for `track_dirty_pages`. */
  enable_diff_snapshots: z.boolean().optional(),
  resume_vm: z.boolean(),
  /** v1.12+. */
  network_overrides: z.array(NetworkOverrideSchema).optional(),
  /** v1.16+. */
  vsock_override: z.strictObject({ uds_path: z.string().min(1) }).optional(),
});

export type TokenBucket = z.infer<typeof TokenBucketSchema>;
export type RateLimiter = z.infer<typeof RateLimiterSchema>;
export type BootSourceBody = z.infer<typeof BootSourceSchema>;
export type MachineConfigBody = z.infer<typeof MachineConfigSchema>;
export type DriveBody = z.infer<typeof DriveSchema>;
export type DrivePatchBody = z.infer<typeof DrivePatchSchema>;
export type NetworkInterfaceBody = z.infer<typeof NetworkInterfaceSchema>;
export type VsockBody = z.infer<typeof VsockSchema>;
export type MmdsConfigBody = z.infer<typeof MmdsConfigSchema>;
export type MmdsContents = z.infer<typeof MmdsContentsSchema>;
export type EntropyBody = z.infer<typeof EntropySchema>;
export type BalloonBody = z.infer<typeof BalloonSchema>;
export type BalloonUpdateBody = z.infer<typeof BalloonUpdateSchema>;
export type LoggerBody = z.infer<typeof LoggerSchema>;
export type MetricsBody = z.infer<typeof MetricsSchema>;
export type ActionBody = z.infer<typeof ActionSchema>;
export type VmStateBody = z.infer<typeof VmStateSchema>;
export type SnapshotCreateBody = z.infer<typeof SnapshotCreateSchema>;
export type SnapshotLoadBody = z.infer<typeof SnapshotLoadSchema>;

/** Response of `GET /`. */
export const InstanceInfoSchema = z.looseObject({
  app_name: z.string(),
  id: z.string(),
  state: z.enum(['Not started', 'Running', 'Paused']),
  vmm_version: z.string(),
});
export type InstanceInfo = z.infer<typeof InstanceInfoSchema>;

/** Response of `GET /version`. */
export const VersionResponseSchema = z.looseObject({ firecracker_version: z.string() });
