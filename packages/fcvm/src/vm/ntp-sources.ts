/**
 * The host's NTP sources, handed to the guest's chronyd (seed change §8.1): the `server` and
 * `pool` lines of the host's chrony configuration (and its sources.d), without `xleave`, which the
 * guest cannot use. A host without chrony gives none, and the guest still runs chronyd.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NtpSource } from '@fcvm/protocol';

const CONFIG_FILES = ['/etc/chrony/chrony.conf', '/etc/chrony.conf'];
const SOURCE_DIRS = ['/etc/chrony/sources.d'];

export function parseChronySources(text: string): NtpSource[] {
  const sources: NtpSource[] = [];
  for (const raw of text.split('\n')) {
    const words = raw
      .replace(/[#!;%].*$/, '')
      .trim()
      .split(/\s+/);
    const [kind, address, ...options] = words;
    if ((kind !== 'server' && kind !== 'pool') || !address) continue;
    sources.push({ kind, address, options: options.filter((o) => o !== 'xleave') });
  }
  return sources;
}

export function hostNtpSources(): NtpSource[] {
  const texts: string[] = [];
  for (const file of CONFIG_FILES) {
    try {
      texts.push(readFileSync(file, 'utf8'));
      break;
    } catch {
      // not this one
    }
  }
  for (const dir of SOURCE_DIRS) {
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.sources'));
    } catch {
      continue;
    }
    for (const name of names.sort()) texts.push(readFileSync(join(dir, name), 'utf8'));
  }
  return texts.flatMap(parseChronySources);
}
