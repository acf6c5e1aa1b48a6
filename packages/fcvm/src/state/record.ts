/**
 * One registry record per fcvm process (a VM, a memory server, or a clone). The fields follow the
 * reference (upstream-fcvm §2.4). Reading tolerates unknown fields (a newer fcvm may have written
 * them) and fills defaults for missing ones; environment values are never stored.
 */
import { z } from 'zod';

export const SCHEMA_VERSION = 1;

export const VM_STATUSES = ['starting', 'running', 'stopped', 'failed'] as const;
export const HEALTH_STATUSES = ['unknown', 'healthy', 'unhealthy', 'timeout', 'unreachable', 'stopped'] as const;
export const PROCESS_TYPES = ['vm', 'serve', 'clone'] as const;
export type VmStatus = (typeof VM_STATUSES)[number];
export type HealthStatus = (typeof HEALTH_STATUSES)[number];
export type ProcessType = (typeof PROCESS_TYPES)[number];

const PortMappingSchema = z.looseObject({
  host_ip: z.string().nullable().default(null),
  host_port: z.number().int(),
  guest_port: z.number().int(),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
});

const VolumeSchema = z.looseObject({
  host_path: z.string(),
  guest_path: z.string(),
  read_only: z.boolean().default(false),
});

const NetworkSchema = z.looseObject({
  mode: z.enum(['rootless', 'bridged', 'routed']).default('rootless'),
  tap_device: z.string().nullable().default(null),
  guest_mac: z.string().nullable().default(null),
  guest_ip: z.string().nullable().default(null),
  host_ip: z.string().nullable().default(null),
  loopback_ip: z.string().nullable().default(null),
  namespace_name: z.string().nullable().default(null),
});

const VmConfigSchema = z.looseObject({
  image: z.string().nullable().default(null),
  vcpu: z.number().int().nullable().default(null),
  memory_mib: z.number().int().nullable().default(null),
  hypervisor: z.enum(['firecracker', 'qemu']).nullable().default(null),
  network: NetworkSchema.default(() => NetworkSchema.parse({})),
  volumes: z.array(VolumeSchema).default([]),
  port_mappings: z.array(PortMappingSchema).default([]),
  labels: z.record(z.string(), z.string()).default({}),
  health_check_url: z.string().nullable().default(null),
  snapshot_name: z.string().nullable().default(null),
  process_type: z.enum(PROCESS_TYPES).default('vm'),
  serve_pid: z.number().int().nullable().default(null),
  hugepages: z.boolean().default(false),
  tty: z.boolean().default(false),
  interactive: z.boolean().default(false),
  user: z.string().nullable().default(null),
});

/** Only on `fcvm snapshot serve` records: where clones connect, and per-clone counters (src/uffd/). */
const ServeInfoSchema = z.looseObject({
  socket_path: z.string(),
  memory_file: z.string(),
  clones: z.array(z.record(z.string(), z.unknown())).default([]),
});

export const VmRecordSchema = z.looseObject({
  schema_version: z.number().int().default(SCHEMA_VERSION),
  vm_id: z.string().regex(/^[A-Za-z0-9_-]{1,80}$/),
  name: z.string().nullable().default(null),
  status: z.enum(VM_STATUSES).default('starting'),
  health_status: z.enum(HEALTH_STATUSES).default('unknown'),
  exit_code: z.number().int().nullable().default(null),
  /** PID of the fcvm process that owns the record: what users pass to `--pid`. */
  pid: z.number().int().positive(),
  /** Start time of `pid` (clock ticks since boot) so a reused PID is recognised. */
  pid_start_time: z.number().int().nullable().default(null),
  /** Helper processes (VMM, namespace holder, pasta) the sweeper may have to end if the owner died. */
  children: z
    .array(z.looseObject({ pid: z.number().int().positive(), start_time: z.number().int(), role: z.string() }))
    .default([]),
  holder_pid: z.number().int().nullable().default(null),
  /** ISO timestamps; filled in by the registry when absent. */
  created_at: z.string().default(() => new Date().toISOString()),
  last_updated: z.string().default(() => new Date().toISOString()),
  config: VmConfigSchema.default(() => VmConfigSchema.parse({})),
  serve: ServeInfoSchema.optional(),
});

export type VmRecord = z.infer<typeof VmRecordSchema>;
export type VmRecordInput = z.input<typeof VmRecordSchema>;

/** A new vm id: `vm-` and 32 lowercase hex digits, as in the reference. */
export function newVmId(): string {
  return `vm-${crypto.randomUUID().replaceAll('-', '')}`;
}
