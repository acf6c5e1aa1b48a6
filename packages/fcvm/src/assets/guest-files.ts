/**
 * The guest-side files that go into assets (packages/fcvm/guest/): init scripts and config. They
 * are real files, read at build time, and their content is part of each asset's input hash.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FcvmError } from '../errors.js';
import { sha256OfText } from './store.js';

export const GUEST_FILES = {
  stage1Init: 'stage1-init.sh',
  guestInit: 'fcvm-init.sh',
  containersConf: 'containers.conf',
  hostname: 'hostname',
  hosts: 'hosts',
  resolvConf: 'resolv.conf',
} as const;

export type GuestFile = keyof typeof GUEST_FILES;

/**
 * From the sources (src/assets/ -> ../../guest) or from the bundle (build/fcvm.mjs ->
 * ../packages/fcvm/guest). FCVM_GUEST_DIR overrides both (packaging).
 */
export function guestFilesDir(env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [
    env.FCVM_GUEST_DIR,
    fileURLToPath(new URL('../../guest/', import.meta.url)),
    fileURLToPath(new URL('../packages/fcvm/guest/', import.meta.url)),
  ];
  for (const candidate of candidates) {
    if (candidate && existsSync(`${candidate}/${GUEST_FILES.guestInit}`)) return candidate;
  }
  throw new FcvmError(
    'ASSET_BUILD',
    'The guest files of fcvm (packages/fcvm/guest) are missing from this installation.',
  );
}

export function readGuestFile(file: GuestFile): Buffer {
  return readFileSync(`${guestFilesDir()}/${GUEST_FILES[file]}`);
}

/** sha256 of each named guest file: the part of an asset's inputs they contribute. */
export function guestFileHashes(files: readonly GuestFile[]): Record<string, string> {
  const hashes: Record<string, string> = {};
  for (const file of files) hashes[GUEST_FILES[file]] = sha256OfText(readGuestFile(file));
  return hashes;
}
