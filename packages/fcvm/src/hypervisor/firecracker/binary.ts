/**
 * Finding the firecracker binary and the host tools the adapter runs it with. Order for the
 * binary: an explicit path, `FCVM_FIRECRACKER_BIN`, the config's `firecracker.binary`, then `PATH`.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

export interface BinaryLookup {
  /** Path given by the caller (e.g. a command-line flag); wins over everything else. */
  readonly explicit?: string | undefined;
  /** `firecracker.binary` from the config file. */
  readonly configured?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
}

export function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    // Missing, unreadable or not executable all mean the same here: not usable.
    return false;
  }
}

/** Absolute path of `name` in `PATH`, or undefined. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export type BinaryResolution =
  | { readonly found: true; readonly path: string; readonly source: 'explicit' | 'env' | 'config' | 'path' }
  | { readonly found: false; readonly reason: string };

export function resolveFirecrackerBinary(lookup: BinaryLookup = {}): BinaryResolution {
  const env = lookup.env ?? process.env;
  const candidates: Array<[string | undefined, 'explicit' | 'env' | 'config']> = [
    [lookup.explicit, 'explicit'],
    [env.FCVM_FIRECRACKER_BIN, 'env'],
    [lookup.configured, 'config'],
  ];
  for (const [candidate, source] of candidates) {
    if (candidate === undefined || candidate === '') continue;
    // A named binary that is not usable is an error, not a reason to fall back to another one.
    const path = isAbsolute(candidate) ? candidate : (findOnPath(candidate, env) ?? resolve(candidate));
    if (isExecutableFile(path)) return { found: true, path, source };
    const origin = source === 'env' ? 'FCVM_FIRECRACKER_BIN' : source === 'config' ? 'the config file' : 'the caller';
    return { found: false, reason: `the firecracker binary ${candidate} named by ${origin} is not an executable file` };
  }
  const onPath = findOnPath('firecracker', env);
  if (onPath) return { found: true, path: onPath, source: 'path' };
  return { found: false, reason: 'no firecracker binary was found in PATH (set FCVM_FIRECRACKER_BIN to use one)' };
}
