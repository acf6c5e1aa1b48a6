/**
 * fcvm's own image store: archives under `<data>/assets/images/` and `index.json`, which maps an
 * image reference to its archive. `fcvm podman run localhost/fcvm-busybox ...` resolves through it
 * and loads the archive into the guest's podman, so no registry is needed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { FcvmError } from '../errors.js';

export type LocalImageFormat = 'docker-archive' | 'oci-archive';

const IndexSchema = z
  .object({
    images: z.record(
      z.string(),
      z.object({ archive: z.string().min(1), format: z.enum(['docker-archive', 'oci-archive']) }).strict(),
    ),
  })
  .strict();

export type ImageIndex = z.infer<typeof IndexSchema>;

export function imagesDir(assetsDir: string): string {
  return join(assetsDir, 'images');
}

function indexPath(assetsDir: string): string {
  return join(imagesDir(assetsDir), 'index.json');
}

/** `localhost/fcvm-busybox` -> `localhost/fcvm-busybox:latest`; digests and tags are kept. */
export function normalizeImageRef(ref: string): string {
  const lastSlash = ref.lastIndexOf('/');
  const name = ref.slice(lastSlash + 1);
  if (name.includes('@') || name.includes(':')) return ref;
  return `${ref}:latest`;
}

export function readImageIndex(assetsDir: string): ImageIndex {
  let text: string;
  try {
    text = readFileSync(indexPath(assetsDir), 'utf8');
  } catch {
    return { images: {} };
  }
  const parsed = IndexSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new FcvmError('STATE', `The image index ${indexPath(assetsDir)} is damaged: run \`fcvm setup --force\`.`);
  }
  return parsed.data;
}

export function serializeImageIndex(index: ImageIndex): string {
  return `${JSON.stringify(index, null, 2)}\n`;
}

/** Rewrites index.json (temp file + rename) only when its content changes. */
export async function writeImageIndex(assetsDir: string, index: ImageIndex): Promise<void> {
  const text = serializeImageIndex(index);
  let current: string | undefined;
  try {
    current = readFileSync(indexPath(assetsDir), 'utf8');
  } catch {
    current = undefined;
  }
  if (current === text) return;
  await mkdir(imagesDir(assetsDir), { recursive: true, mode: 0o700 });
  const temp = `${indexPath(assetsDir)}.${process.pid}.tmp`;
  await writeFile(temp, text, { mode: 0o644 });
  await rename(temp, indexPath(assetsDir));
}

export interface LocalImage {
  readonly ref: string;
  readonly path: string;
  readonly format: LocalImageFormat;
}

/** The archive for `ref` in fcvm's image store, or undefined when the store does not have it. */
export function resolveLocalImage(assetsDir: string, ref: string): LocalImage | undefined {
  const normalized = normalizeImageRef(ref);
  const entry = readImageIndex(assetsDir).images[normalized];
  if (entry === undefined) return undefined;
  const path = join(imagesDir(assetsDir), entry.archive);
  return existsSync(path) ? { ref: normalized, path, format: entry.format } : undefined;
}
