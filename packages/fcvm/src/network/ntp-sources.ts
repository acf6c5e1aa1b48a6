/**
 * The host's NTP sources for the guest's chronyd: the `server` and `pool` lines of the host's chrony
 * configuration (main file, `confdir` *.conf files, `sourcedir` *.sources files), with `xleave`
 * removed (interleaved mode needs the peer to keep per-client state the guest cannot rely on). A host
 * without chrony has no sources, and the guest's chronyd then only steps on restore.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NtpSource } from '@fcvm/protocol';
import { errnoCode } from '../errors.js';
import { log } from '../log.js';

export const CHRONY_CONFIG_PATHS: readonly string[] = ['/etc/chrony/chrony.conf', '/etc/chrony.conf'];

interface ParsedConfig {
  readonly sources: NtpSource[];
  /** Directories named by confdir (*.conf) and sourcedir (*.sources). */
  readonly includes: { readonly dir: string; readonly suffix: string }[];
}

export function parseChronyConfig(text: string): ParsedConfig {
  const sources: NtpSource[] = [];
  const includes: { dir: string; suffix: string }[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    // Comments are whole lines; a `%` inside a line is an IPv6 zone (fe80::1%eth0).
    if (/^[#!;%]/.test(line)) continue;
    const words = line.split(/\s+/).filter(Boolean);
    const [directive, ...args] = words;
    if ((directive === 'server' || directive === 'pool') && args[0] !== undefined) {
      const [address, ...options] = args;
      sources.push({ kind: directive, address, options: options.filter((option) => option !== 'xleave') });
    } else if (directive === 'confdir') {
      for (const dir of args) includes.push({ dir, suffix: '.conf' });
    } else if (directive === 'sourcedir') {
      for (const dir of args) includes.push({ dir, suffix: '.sources' });
    }
  }
  return { sources, includes };
}

function readIfPresent(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return null;
    log.warn(`cannot read ${path} for NTP sources: ${(err as Error).message}`);
    return null;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') log.warn(`cannot list ${dir} for NTP sources: ${(err as Error).message}`);
    return [];
  }
}

export function readHostNtpSources(configPaths: readonly string[] = CHRONY_CONFIG_PATHS): NtpSource[] {
  for (const path of configPaths) {
    const text = readIfPresent(path);
    if (text === null) continue;
    const main = parseChronyConfig(text);
    const sources = [...main.sources];
    for (const include of main.includes) {
      for (const name of listDir(include.dir).filter((file) => file.endsWith(include.suffix))) {
        const included = readIfPresent(join(include.dir, name));
        if (included !== null) sources.push(...parseChronyConfig(included).sources);
      }
    }
    return sources;
  }
  return [];
}
