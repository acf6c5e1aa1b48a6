/** One member of an archive that fcvm writes itself (cpio for initramfs, tar for image layers). */
export type ArchiveEntry =
  | { readonly type: 'dir'; readonly path: string; readonly mode: number }
  | { readonly type: 'file'; readonly path: string; readonly mode: number; readonly data: Buffer }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string };

/** Archive member names are relative ("bin/sh"); leading "/" and "./" are dropped. */
export function memberName(path: string): string {
  return path.replace(/^(\.\/|\/)+/, '');
}
