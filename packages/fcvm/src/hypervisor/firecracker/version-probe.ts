/**
 * Asks a firecracker binary for its version (`firecracker --version`) and remembers the answer per
 * binary path + mtime + size: in memory for this process and in a small cache file under the data
 * directory for the next fcvm run. Replacing the binary changes mtime or size, so the cache never
 * answers for a different build.
 */
import { mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { errnoCode, FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import { run } from '../../util/subprocess.js';
import { type FirecrackerVersion, formatVersion, parseVersion, parseVersionOutput } from './version.js';

const VERSION_COMMAND_TIMEOUT_MS = 10_000;

const CacheFileSchema = z.object({ versions: z.record(z.string(), z.string()) });

const memoryCache = new Map<string, FirecrackerVersion>();

/** Key under which a binary's version is cached: it changes whenever the file is replaced. */
export function binaryIdentity(binary: string): string {
  const real = realpathSync(binary);
  const stat = statSync(real);
  return `${real}|${Math.trunc(stat.mtimeMs)}|${stat.size}`;
}

function readCacheFile(cacheFile: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(cacheFile, 'utf8');
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') log.debug(`firecracker version cache ${cacheFile} unreadable: ${String(err)}`);
    return {};
  }
  try {
    const parsed = CacheFileSchema.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data.versions;
  } catch (err) {
    log.debug(`firecracker version cache ${cacheFile} is not JSON, ignoring it: ${String(err)}`);
  }
  return {};
}

function writeCacheFile(cacheFile: string, versions: Record<string, string>): void {
  try {
    mkdirSync(dirname(cacheFile), { recursive: true, mode: 0o700 });
    const temp = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(temp, `${JSON.stringify({ versions }, null, 2)}\n`, { mode: 0o600 });
    renameSync(temp, cacheFile);
  } catch (err) {
    // The cache only saves a fork+exec next time; failing to write it must not fail a VM start.
    log.debug(`could not write the firecracker version cache ${cacheFile}: ${String(err)}`);
  }
}

function runVersionCommand(binary: string): Promise<string> {
  return run([binary, '--version'], { errorCode: 'HYPERVISOR', timeoutMs: VERSION_COMMAND_TIMEOUT_MS });
}

export interface VersionProbeOptions {
  /** Cache file shared by fcvm runs; omit to keep the answer in memory only. */
  readonly cacheFile?: string | undefined;
}

export async function detectFirecrackerVersion(
  binary: string,
  options: VersionProbeOptions = {},
): Promise<FirecrackerVersion> {
  let identity: string;
  try {
    identity = binaryIdentity(binary);
  } catch (err) {
    throw new FcvmError('HYPERVISOR', `The firecracker binary ${binary} cannot be read.`, { cause: err });
  }
  const remembered = memoryCache.get(identity);
  if (remembered) return remembered;

  const fileEntries = options.cacheFile ? readCacheFile(options.cacheFile) : {};
  const cachedText = fileEntries[identity];
  const cached = cachedText === undefined ? undefined : parseVersion(cachedText);
  if (cached) {
    memoryCache.set(identity, cached);
    return cached;
  }

  const output = await runVersionCommand(binary);
  const version = parseVersionOutput(output);
  if (!version) {
    throw new FcvmError(
      'HYPERVISOR',
      `${binary} --version printed ${JSON.stringify(output.trim().slice(0, 80))}, not "Firecracker vX.Y.Z", so it is not a firecracker binary fcvm can use.`,
    );
  }
  memoryCache.set(identity, version);
  if (options.cacheFile) writeCacheFile(options.cacheFile, { ...fileEntries, [identity]: formatVersion(version) });
  return version;
}

/** For tests: forget what this process learnt. */
export function clearVersionMemoryCache(): void {
  memoryCache.clear();
}
