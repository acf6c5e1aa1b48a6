/**
 * Parsers for command-line values. Each returns a typed value or throws a usage error whose one
 * sentence names the flag, the bad value and the expected form. Repeatable flags also accept
 * comma-separated values (`--publish 80:80,443:443`).
 */
import { existsSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { usageError } from '../errors.js';

import { MAX_MEM_MIB, MAX_VCPUS, MIN_MEM_MIB, type PortMapping, type VolumeMapping } from '../vm/run-request.js';

export type { NetworkMode, PortMapping, VolumeMapping } from '../vm/run-request.js';
export { MAX_MEM_MIB, MAX_VCPUS, MIN_MEM_MIB, NETWORK_MODES } from '../vm/run-request.js';

const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$/;

export function parseName(value: string, flag = '--name'): string {
  if (!NAME_PATTERN.test(value)) {
    throw usageError(`Invalid ${flag} '${value}': use 1 to 63 letters, digits, '_' or '-', not starting with '-'.`);
  }
  return value;
}

function parsePort(text: string, flag: string, whole: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw usageError(`Invalid ${flag} '${whole}': port '${text}' is not a number from 1 to 65535.`);
  }
  return Number(text);
}

/** `[IP:]HOST:GUEST[/tcp|udp]`; an IPv6 address goes in brackets: `[::1]:8080:80`. */
export function parsePublish(value: string, flag = '--publish'): PortMapping {
  const form = 'expected [IP:]HOST:GUEST[/tcp|udp]';
  let rest = value;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash !== -1) {
    const proto = rest.slice(slash + 1);
    if (proto !== 'tcp' && proto !== 'udp')
      throw usageError(`Invalid ${flag} '${value}': protocol '${proto}' is not tcp or udp.`);
    protocol = proto;
    rest = rest.slice(0, slash);
  }
  let hostIp: string | null = null;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1 || rest[close + 1] !== ':') throw usageError(`Invalid ${flag} '${value}': ${form}.`);
    hostIp = rest.slice(1, close);
    if (isIP(hostIp) !== 6) throw usageError(`Invalid ${flag} '${value}': '${hostIp}' is not an IPv6 address.`);
    rest = rest.slice(close + 2);
  }
  const parts = rest.split(':');
  if (hostIp === null && parts.length === 3) {
    hostIp = parts.shift() as string;
    if (isIP(hostIp) !== 4) throw usageError(`Invalid ${flag} '${value}': '${hostIp}' is not an IPv4 address.`);
  }
  if (parts.length !== 2) throw usageError(`Invalid ${flag} '${value}': ${form}.`);
  const [host, guest] = parts as [string, string];
  return { hostIp, hostPort: parsePort(host, flag, value), guestPort: parsePort(guest, flag, value), protocol };
}

/** `HOST:GUEST[:ro]`; the host path must exist and the guest path must be absolute. */
export function parseMap(value: string, flag = '--map'): VolumeMapping {
  const parts = value.split(':');
  let readOnly = false;
  if (parts.length === 3) {
    const mode = parts.pop();
    if (mode !== 'ro' && mode !== 'rw')
      throw usageError(`Invalid ${flag} '${value}': the mode '${mode}' is not ro or rw.`);
    readOnly = mode === 'ro';
  }
  if (parts.length !== 2 || !parts[0] || !parts[1])
    throw usageError(`Invalid ${flag} '${value}': expected HOST:GUEST[:ro].`);
  const [hostPath, guestPath] = parts as [string, string];
  if (!existsSync(hostPath))
    throw usageError(`Invalid ${flag} '${value}': the host path '${hostPath}' does not exist.`);
  if (!isAbsolute(guestPath))
    throw usageError(`Invalid ${flag} '${value}': the guest path '${guestPath}' is not absolute.`);
  return { hostPath, guestPath, readOnly };
}

/** A file that must exist before anything starts (e.g. `--kernel`). */
export function parseExistingFile(value: string, flag: string): string {
  let isFile = false;
  try {
    isFile = statSync(value).isFile();
  } catch {
    throw usageError(`Invalid ${flag} '${value}': no such file; give the path of an existing file.`);
  }
  if (!isFile) throw usageError(`Invalid ${flag} '${value}': not a regular file; give the path of a file.`);
  return value;
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `K=V`. Comma splitting only happens before something that looks like `KEY=`, so a value may
 * hold commas: `A=1,2,B=3` is A='1,2' and B='3'.
 */
export function parseEnvList(value: string, flag = '--env'): Array<[string, string]> {
  const pieces = value.split(',');
  const entries: string[] = [];
  for (const piece of pieces) {
    const eq = piece.indexOf('=');
    if (entries.length > 0 && (eq <= 0 || !ENV_KEY.test(piece.slice(0, eq)))) {
      entries[entries.length - 1] += `,${piece}`;
    } else {
      entries.push(piece);
    }
  }
  return entries.map((entry) => {
    const eq = entry.indexOf('=');
    const key = eq === -1 ? entry : entry.slice(0, eq);
    if (eq === -1 || !ENV_KEY.test(key)) {
      throw usageError(`Invalid ${flag} '${entry}': expected KEY=VALUE with KEY made of letters, digits and '_'.`);
    }
    return [key, entry.slice(eq + 1)];
  });
}

export function parseLabel(value: string, flag = '--label'): [string, string] {
  const eq = value.indexOf('=');
  if (eq <= 0) throw usageError(`Invalid ${flag} '${value}': expected KEY=VALUE.`);
  return [value.slice(0, eq), value.slice(eq + 1)];
}

export function parseIntInRange(value: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw usageError(`Invalid ${flag} '${value}': expected a whole number from ${min} to ${max}.`);
  }
  return Number(value);
}

export function parseCpu(value: string): number | 'unlimited' {
  return value === 'unlimited' ? value : parseIntInRange(value, '--cpu', 1, MAX_VCPUS);
}

export function parseMem(value: string): number | 'unlimited' {
  return value === 'unlimited' ? value : parseIntInRange(value, '--mem', MIN_MEM_MIB, MAX_MEM_MIB);
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Sizes like `10G`, `512M`, `4096` (bytes). */
export function parseSize(value: string, flag: string): number {
  const match = /^(\d+)([KMGT]?)(i?B)?$/i.exec(value);
  if (!match) throw usageError(`Invalid ${flag} '${value}': expected a size such as 512M or 10G.`);
  return Number(match[1]) * (SIZE_UNITS[(match[2] ?? '').toUpperCase()] ?? 1);
}

export function parsePid(value: string, flag = '--pid'): number {
  return parseIntInRange(value, flag, 1, 2 ** 22);
}

export function parseChoice<T extends string>(value: string, flag: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw usageError(`Invalid ${flag} '${value}': expected one of ${choices.join(', ')}.`);
  }
  return value as T;
}

/** For repeatable flags: commander calls this once per occurrence; `parse` may yield several items. */
export function collect<T>(parse: (value: string) => T[]): (value: string, previous: T[] | undefined) => T[] {
  return (value, previous) => [...(previous ?? []), ...parse(value)];
}

/** Splits a comma-separated flag value, rejecting empty items. */
export function splitCommas(value: string, flag: string): string[] {
  const items = value.split(',');
  if (items.some((item) => item.length === 0))
    throw usageError(`Invalid ${flag} '${value}': empty item in a comma-separated list.`);
  return items;
}
