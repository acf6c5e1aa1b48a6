/**
 * `snapshots/<name>/snapshot.json`: what a snapshot is and how to restore it. A snapshot directory
 * is complete only when this file and every file it names exist; the metadata is written last
 * (atomically), so an interrupted `snapshot create` never looks complete.
 */
import { z } from 'zod';

export const SNAPSHOT_TYPES = ['user', 'system'] as const;
export type SnapshotType = (typeof SNAPSHOT_TYPES)[number];

export const SnapshotMetadataSchema = z.looseObject({
  schema_version: z.number().int().default(1),
  name: z.string(),
  /** `user`: made by `fcvm snapshot create`; `system`: the automatic start-up cache. */
  snapshot_type: z.enum(SNAPSHOT_TYPES).default('user'),
  created_at: z.string(),
  hypervisor: z.enum(['firecracker', 'qemu']),
  /** The VM the snapshot was taken from. */
  source_vm_id: z.string(),
  source_name: z.string().nullable().default(null),
  image: z.string().nullable().default(null),
  vcpus: z.number().int(),
  memory_mib: z.number().int(),
  hugepages: z.boolean().default(false),
  /** The snapshot the source VM was cloned from, if it was a clone (its disk is this one's backing file). */
  parent: z.string().nullable().default(null),
  /** `full`: memory + device state stand alone; `diff`: only pages dirtied since `parent` (Firecracker). */
  kind: z.enum(['full', 'diff']).default('full'),
  /** What the container runs; the guest has it in memory already, this is for people and `snapshot ls`. */
  container: z
    .looseObject({
      command: z.array(z.string()).nullable().default(null),
      env: z.record(z.string(), z.string()).default({}),
      user: z.string().nullable().default(null),
      workdir: z.string().nullable().default(null),
      tty: z.boolean().default(false),
      interactive: z.boolean().default(false),
    })
    .default(() => ({ command: null, env: {}, user: null, workdir: null, tty: false, interactive: false })),
  /** Network mode and published ports the clones inherit. */
  network: z
    .looseObject({
      mode: z.enum(['none', 'rootless', 'bridged', 'routed']).default('none'),
      port_mappings: z.array(z.record(z.string(), z.unknown())).default([]),
      /** The guest's side, which a clone keeps: eth0's address (CIDR), gateway and MAC. */
      guest: z.looseObject({ address: z.string(), gateway: z.string(), mac: z.string() }).nullable().default(null),
    })
    .default(() => ({ mode: 'none' as const, port_mappings: [], guest: null })),
  /** The kernel the VM booted: clones start the VMM with it (asset names carry their content hash). */
  kernel_path: z.string().nullable().default(null),
  /** Asset file names (content-addressed) of the kernel and the root disk base, for provenance. */
  assets: z.record(z.string(), z.string()).default({}),
  /** Read-only disks after the root disk, in guest order (the image archive); paths outside the snapshot. */
  extra_disks: z.array(z.looseObject({ id: z.string(), path: z.string() })).default([]),
  /** Format of `files.disk`: a qcow2 overlay (QEMU) or a raw image (reflink/sparse copy). */
  disk_format: z.enum(['raw', 'qcow2']).default('raw'),
  /** File names inside the snapshot directory; `initrd` and `token` are what the guest was booted with. */
  files: z.looseObject({
    memory: z.string(),
    vmstate: z.string(),
    disk: z.string(),
    initrd: z.string().optional(),
    token: z.string().optional(),
  }),
});

export type SnapshotMetadata = z.infer<typeof SnapshotMetadataSchema>;

export const SNAPSHOT_METADATA_FILE = 'snapshot.json';
