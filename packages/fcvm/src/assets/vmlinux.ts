/**
 * The uncompressed kernel Firecracker boots: an ELF `vmlinux` on x86_64 (taken out of the bzImage,
 * the way the kernel's scripts/extract-vmlinux does) and the raw `Image` on aarch64 (Debian ships it
 * gzip-compressed as vmlinuz).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { FcvmError } from '../errors.js';
import { requireHostTool, runTool } from './host-tools.js';

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const LZ4_LEGACY_MAGIC = 0x184c2102;

/** Where the compressed kernel sits inside an x86 bzImage (boot protocol 2.08+ header fields). */
export function bzImagePayload(image: Buffer): Buffer | undefined {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  const setupSectors = image[0x1f1] || 4;
  const protectedModeStart = (setupSectors + 1) * 512;
  const offset = protectedModeStart + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  if (offset + length > image.length) return undefined;
  return image.subarray(offset, offset + length);
}

const DECOMPRESS_ARGS = { xz: ['-dc', '--single-stream'], zstd: ['-dcq'], lz4: ['-dcq'] } as const;

async function decompressWithTool(tool: keyof typeof DECOMPRESS_ARGS, payload: Buffer): Promise<Buffer> {
  const path = requireHostTool(tool, 'Extracting the uncompressed kernel');
  const dir = await mkdtemp(join(process.env.TMPDIR ?? '/tmp', 'fcvm-vmlinux-'));
  try {
    await writeFile(join(dir, 'payload'), payload);
    await runTool([path, ...DECOMPRESS_ARGS[tool], join(dir, 'payload')], { stdoutPath: join(dir, 'out') });
    return await readFile(join(dir, 'out'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function decompress(payload: Buffer): Promise<Buffer> {
  if (payload.subarray(0, 2).equals(GZIP_MAGIC)) return gunzipSync(payload);
  if (payload.subarray(0, 6).equals(XZ_MAGIC)) return decompressWithTool('xz', payload);
  if (payload.subarray(0, 4).equals(ZSTD_MAGIC)) return decompressWithTool('zstd', payload);
  if (payload.length >= 8 && payload.readUInt32LE(0) === LZ4_LEGACY_MAGIC) {
    // Legacy LZ4 frames have no end mark: the 4-byte uncompressed size the kernel build appends
    // would be read as one more block header, so it is left out.
    return decompressWithTool('lz4', payload.subarray(0, payload.length - 4));
  }
  throw new FcvmError(
    'ASSET_BUILD',
    'The kernel image uses a compression fcvm cannot unpack (not gzip, xz, zstd or lz4).',
  );
}

/** The uncompressed kernel for Firecracker, from the distribution's vmlinuz. */
export async function extractUncompressedKernel(vmlinuz: Buffer, arch: string): Promise<Buffer> {
  if (vmlinuz.subarray(0, 4).equals(ELF_MAGIC)) return vmlinuz;
  if (arch === 'arm64') {
    // Debian's arm64 vmlinuz is a gzip-compressed Image; Firecracker wants the Image itself.
    return vmlinuz.subarray(0, 2).equals(GZIP_MAGIC) ? gunzipSync(vmlinuz) : vmlinuz;
  }
  const payload = bzImagePayload(vmlinuz);
  if (payload === undefined) {
    throw new FcvmError('ASSET_BUILD', 'The kernel image is not a bzImage fcvm can read (no "HdrS" setup header).');
  }
  const vmlinux = await decompress(payload);
  if (!vmlinux.subarray(0, 4).equals(ELF_MAGIC)) {
    throw new FcvmError('ASSET_BUILD', 'The kernel payload did not decompress to an ELF vmlinux.');
  }
  return vmlinux;
}
