/**
 * Where the container image comes from, and how it reaches the guest:
 * - `docker-archive:PATH` / `oci-archive:PATH`: the host file, attached read-only as a disk;
 * - a reference fcvm's own image store has (`localhost/fcvm-busybox`): its archive, the same way;
 * - anything else: pulled by podman in the guest (needs the guest to have a network).
 * An archive disk is the file itself (tar archives are whole 512-byte blocks): nothing is copied.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ImageSource } from '@fcvm/protocol';
import { resolveLocalImage } from '../assets/index.js';
import { FcvmError, usageError } from '../errors.js';

/** The guest device of the image disk: the second disk after the root disk. */
export const IMAGE_DISK_GUEST_PATH = '/dev/vdb';

export interface ResolvedImage {
  /** What the agent is told. */
  readonly source: ImageSource;
  /** Reference to run once the archive is loaded; null: whatever the archive holds. */
  readonly reference: string | null;
  /** Host file to attach as the image disk, if any. */
  readonly archivePath: string | null;
}

const ARCHIVE_PREFIXES = ['docker-archive:', 'oci-archive:'] as const;

export function resolveImage(image: string, assetsDir: string): ResolvedImage {
  for (const prefix of ARCHIVE_PREFIXES) {
    if (!image.startsWith(prefix)) continue;
    const path = resolve(image.slice(prefix.length));
    if (!existsSync(path) || !statSync(path).isFile()) {
      throw usageError(`Invalid image '${image}': the archive ${path} does not exist.`);
    }
    if (statSync(path).size % 512 !== 0) {
      throw usageError(
        `Invalid image '${image}': ${path} is not a tar archive (its size is not a multiple of 512 bytes).`,
      );
    }
    const format = prefix === 'docker-archive:' ? 'docker-archive' : 'oci-archive';
    return { source: { kind: 'archive', format, path: IMAGE_DISK_GUEST_PATH }, reference: null, archivePath: path };
  }
  const local = resolveLocalImage(assetsDir, image);
  if (local) {
    return {
      source: { kind: 'archive', format: local.format, path: IMAGE_DISK_GUEST_PATH },
      reference: local.ref,
      archivePath: local.path,
    };
  }
  if (image.startsWith('localhost/')) {
    throw new FcvmError(
      'NOT_FOUND',
      `The image ${image} is not in fcvm's image store; run \`fcvm setup\` or use docker-archive:PATH.`,
    );
  }
  return { source: { kind: 'registry', reference: image }, reference: image, archivePath: null };
}
