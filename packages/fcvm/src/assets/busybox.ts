/**
 * The host's static busybox (Debian package busybox-static): the stage-1 initramfs's only program,
 * the guest's `poweroff -f`, and the whole test image.
 */
import { readFileSync } from 'node:fs';
import { FcvmError } from '../errors.js';
import { requireHostTool, runTool } from './host-tools.js';
import { sha256OfText } from './store.js';

const PT_INTERP = 3;

/** True for a 64-bit little-endian ELF without a program interpreter (statically linked). */
export function isStaticElf(binary: Buffer): boolean {
  if (binary.length < 64 || binary.readUInt32BE(0) !== 0x7f454c46 || binary[4] !== 2 || binary[5] !== 1) return false;
  const phoff = Number(binary.readBigUInt64LE(0x20));
  const phentsize = binary.readUInt16LE(0x36);
  const phnum = binary.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const offset = phoff + i * phentsize;
    if (offset + 4 > binary.length) return false;
    if (binary.readUInt32LE(offset) === PT_INTERP) return false;
  }
  return true;
}

export interface StaticBusybox {
  readonly path: string;
  readonly sha256: string;
  readonly binary: Buffer;
}

export function findStaticBusybox(): StaticBusybox {
  const path = requireHostTool('busybox', 'Building the initramfs and the test image');
  const binary = readFileSync(path);
  if (!isStaticElf(binary)) {
    throw new FcvmError(
      'MISSING_HOST_TOOL',
      `${path} is linked dynamically and cannot run inside a VM: install the Debian package busybox-static (apt-get install busybox-static).`,
    );
  }
  return { path, sha256: sha256OfText(binary), binary };
}

/** Applet paths relative to / ("bin/sh", "usr/bin/wget", ...), from `busybox --list-full`. */
export async function busyboxAppletPaths(busybox: StaticBusybox): Promise<string[]> {
  const out = await runTool([busybox.path, '--list-full']);
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && line !== 'bin/busybox');
}
