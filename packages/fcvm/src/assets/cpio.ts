/**
 * Writer for the cpio "newc" format, the one the Linux kernel unpacks as an initramfs. Written in
 * TypeScript so the per-VM agent initrd needs no host tool and the output is reproducible
 * (mtime 0, owner root, inode numbers by position).
 */
import type { ArchiveEntry } from './archive-entry.js';
import { memberName } from './archive-entry.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function member(ino: number, mode: number, name: string, data: Buffer, nlink = 1): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header =
    '070701' +
    hex8(ino) +
    hex8(mode) +
    hex8(0) + // uid
    hex8(0) + // gid
    hex8(nlink) +
    hex8(0) + // mtime
    hex8(data.length) +
    hex8(0) + // devmajor
    hex8(0) + // devminor
    hex8(0) + // rdevmajor
    hex8(0) + // rdevminor
    hex8(nameBytes.length) +
    hex8(0); // check
  const headerBytes = Buffer.from(header, 'ascii');
  return [headerBytes, nameBytes, pad4(headerBytes.length + nameBytes.length), data, pad4(data.length)];
}

/** The archive, ending with the TRAILER!!! member. Parents must come before their children. */
export function writeCpioNewc(entries: readonly ArchiveEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    const name = memberName(entry.path);
    switch (entry.type) {
      case 'dir':
        parts.push(...member(ino++, S_IFDIR | entry.mode, name, Buffer.alloc(0), 2));
        break;
      case 'file':
        parts.push(...member(ino++, S_IFREG | entry.mode, name, entry.data));
        break;
      case 'symlink':
        parts.push(...member(ino++, S_IFLNK | 0o777, name, Buffer.from(entry.target, 'utf8')));
        break;
    }
  }
  parts.push(...member(0, 0, 'TRAILER!!!', Buffer.alloc(0), 1));
  return Buffer.concat(parts);
}
