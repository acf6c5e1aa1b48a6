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
  /** Snapshot this one is a diff against, if any. */
  parent: z.string().nullable().default(null),
  /** File names inside the snapshot directory. */
  files: z.looseObject({ memory: z.string(), vmstate: z.string(), disk: z.string() }),
});

export type SnapshotMetadata = z.infer<typeof SnapshotMetadataSchema>;

export const SNAPSHOT_METADATA_FILE = 'snapshot.json';
