/**
 * The guest kernel: the distribution's cloud kernel package for the host architecture, fetched with
 * the host's apt (`apt-get download`) and unpacked with `dpkg -x`. The asset is a directory:
 *
 *   kernel-<release>-<hash>/vmlinuz            what QEMU boots (bzImage / Image.gz)
 *   kernel-<release>-<hash>/vmlinux            uncompressed, what Firecracker boots
 *   kernel-<release>-<hash>/modules/<release>/ the module tree (copied into the root filesystem)
 *   kernel-<release>-<hash>/kernel.json        package, version, release
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { FcvmConfig } from '../config.js';
import { FcvmError } from '../errors.js';
import { log } from '../log.js';
import { requireHostTool, runTool } from './host-tools.js';
import type { ReportFraction } from './progress.js';
import { type BuildDir, inputHash } from './store.js';
import { extractUncompressedKernel } from './vmlinux.js';

/** Bump when the kernel asset's layout or extraction changes. */
const KERNEL_BUILDER_VERSION = 1;

export type DebianArch = 'amd64' | 'arm64';

export function debianArch(nodeArch: string = arch()): DebianArch {
  if (nodeArch === 'x64') return 'amd64';
  if (nodeArch === 'arm64') return 'arm64';
  throw new FcvmError('USAGE', `fcvm runs on x86_64 and aarch64 hosts only (this one is ${nodeArch}).`);
}

export interface KernelSource {
  readonly arch: DebianArch;
  /** The real package (a metapackage such as linux-image-cloud-amd64 is resolved to it). */
  readonly package: string;
  readonly version: string;
  /** `uname -r` of the kernel, e.g. 6.1.0-56-cloud-amd64. */
  readonly release: string;
}

export interface KernelAsset {
  readonly name: string;
  readonly dir: string;
  readonly vmlinuz: string;
  readonly vmlinux: string;
  readonly modulesDir: string;
  readonly release: string;
}

/** Fields of the first stanza `apt-cache show --no-all-versions` prints. */
export function parseAptStanza(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line === '') {
      if (Object.keys(fields).length > 0) break;
      continue;
    }
    if (/^\s/.test(line) && last !== undefined) {
      fields[last] += `\n${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon);
    fields[last] = line.slice(colon + 1).trim();
  }
  return fields;
}

const KERNEL_IMAGE_PACKAGE = /^linux-image-(\d[^\s,]*)$/;

/** The linux-image-<release> package a metapackage's Depends names, if any. */
export function kernelPackageFromDepends(depends: string): string | undefined {
  for (const alternative of depends.split(/[,|]/)) {
    const name = alternative.trim().split(/\s/)[0] ?? '';
    if (KERNEL_IMAGE_PACKAGE.test(name)) return name;
  }
  return undefined;
}

async function aptShow(aptCache: string, pkg: string): Promise<Record<string, string>> {
  let out: string;
  try {
    out = await runTool([aptCache, 'show', '--no-all-versions', pkg]);
  } catch (err) {
    throw new FcvmError(
      'ASSET_BUILD',
      `apt does not know the kernel package ${pkg}: run \`apt-get update\` (or set kernel.package in the config).`,
      { cause: err },
    );
  }
  const stanza = parseAptStanza(out);
  if (stanza.Package === undefined || stanza.Version === undefined) {
    throw new FcvmError('ASSET_BUILD', `apt has no installable version of the kernel package ${pkg}.`);
  }
  return stanza;
}

/** Which kernel package and version to use; asks the local apt cache (no network). */
export async function resolveKernelSource(config: FcvmConfig): Promise<KernelSource> {
  const hostArch = debianArch();
  const aptCache = requireHostTool('apt-cache', 'Finding the guest kernel package');
  let stanza = await aptShow(aptCache, requestedKernelPackage(config, hostArch));
  if (!KERNEL_IMAGE_PACKAGE.test(stanza.Package ?? '')) {
    const real = kernelPackageFromDepends(stanza.Depends ?? '');
    if (real === undefined) {
      throw new FcvmError('ASSET_BUILD', `The package ${stanza.Package} does not name a linux-image package to use.`);
    }
    stanza = await aptShow(aptCache, real);
  }
  const pkg = stanza.Package!;
  return { arch: hostArch, package: pkg, version: stanza.Version!, release: KERNEL_IMAGE_PACKAGE.exec(pkg)![1]! };
}

function requestedKernelPackage(config: FcvmConfig, hostArch: DebianArch): string {
  return config.kernel.package ?? `linux-image-cloud-${hostArch}`;
}

const APT_LISTS_DIR = '/var/lib/apt/lists';

/** Changes whenever `apt-get update` changes what apt knows (names, sizes and mtimes of its lists). */
export function aptListsStamp(listsDir: string = APT_LISTS_DIR): string {
  let names: string[];
  try {
    names = readdirSync(listsDir).filter((name) => name !== 'lock' && name !== 'partial' && name !== 'auxfiles');
  } catch {
    return 'no-apt-lists';
  }
  const files = names.sort().map((name) => {
    const st = statSync(join(listsDir, name));
    return [name, st.size, st.mtimeMs];
  });
  return inputHash(files);
}

const KernelSourceSchema = z
  .object({
    arch: z.enum(['amd64', 'arm64']),
    package: z.string(),
    version: z.string(),
    release: z.string(),
  })
  .strict();

/**
 * `resolveKernelSource` remembered in `cachePath` until apt's lists change: apt-cache takes about
 * half a second per query, and every `fcvm podman run` plans its assets.
 */
export async function resolveKernelSourceCached(config: FcvmConfig, cachePath: string): Promise<KernelSource> {
  const key = inputHash({ requested: requestedKernelPackage(config, debianArch()), lists: aptListsStamp() });
  try {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as { key?: unknown; source?: unknown };
    const source = KernelSourceSchema.safeParse(cached.source);
    if (cached.key === key && source.success) return source.data;
  } catch {
    // No cache yet or an unreadable one: ask apt.
  }
  const source = await resolveKernelSource(config);
  try {
    mkdirSync(dirname(cachePath), { recursive: true, mode: 0o700 });
    const temp = `${cachePath}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify({ key, source }));
    renameSync(temp, cachePath);
  } catch (err) {
    // Only a speed-up: a data dir this user cannot write (assets built by root) still works.
    log.debug(`could not remember the kernel package resolution in ${cachePath}: ${String(err)}`);
  }
  return source;
}

export function kernelAssetName(source: KernelSource): string {
  return `kernel-${source.release}-${inputHash({ builder: KERNEL_BUILDER_VERSION, ...source })}`;
}

export function kernelAsset(assetsDir: string, source: KernelSource): KernelAsset {
  const name = kernelAssetName(source);
  const dir = join(assetsDir, name);
  return {
    name,
    dir,
    vmlinuz: join(dir, 'vmlinuz'),
    vmlinux: join(dir, 'vmlinux'),
    modulesDir: join(dir, 'modules', source.release),
    release: source.release,
  };
}

/** Downloads and unpacks the kernel package; returns the directory to publish as the asset. */
export async function buildKernel(source: KernelSource, build: BuildDir, report: ReportFraction): Promise<string> {
  const aptGet = requireHostTool('apt-get', 'Downloading the guest kernel');
  const dpkg = requireHostTool('dpkg', 'Unpacking the guest kernel');
  const debDir = join(build.path, 'deb');
  await mkdir(debDir);
  // As root apt drops to the _apt user for downloads, which cannot write into our 0700 scratch dir.
  const sandbox = process.getuid?.() === 0 ? ['-o', 'APT::Sandbox::User=root'] : [];
  await runTool([aptGet, 'download', '-q', ...sandbox, `${source.package}=${source.version}`], { cwd: debDir });
  report(0.4, 'downloaded');
  const unpacked = join(build.path, 'kernel-unpacked');
  const deb = (await readdir(debDir)).find((name) => name.endsWith('.deb'));
  if (deb === undefined) throw new FcvmError('ASSET_BUILD', `apt-get download produced no .deb for ${source.package}.`);
  await runTool([dpkg, '-x', join(debDir, deb), unpacked]);
  report(0.7, 'unpacked');

  const out = join(build.path, 'kernel');
  await mkdir(join(out, 'modules'), { recursive: true });
  const vmlinuz = join(unpacked, 'boot', `vmlinuz-${source.release}`);
  if (!existsSync(vmlinuz))
    throw new FcvmError('ASSET_BUILD', `${source.package} has no /boot/vmlinuz-${source.release}.`);
  await rename(vmlinuz, join(out, 'vmlinuz'));
  // Packages install modules under /lib (bookworm) or /usr/lib (merged-/usr packaging).
  const modules = [
    join(unpacked, 'lib', 'modules', source.release),
    join(unpacked, 'usr', 'lib', 'modules', source.release),
  ].find((path) => existsSync(path));
  if (modules === undefined)
    throw new FcvmError('ASSET_BUILD', `${source.package} has no modules for ${source.release}.`);
  await rename(modules, join(out, 'modules', source.release));
  const vmlinux = await extractUncompressedKernel(await readFile(join(out, 'vmlinuz')), source.arch);
  await writeFile(join(out, 'vmlinux'), vmlinux, { mode: 0o644 });
  await writeFile(join(out, 'kernel.json'), `${JSON.stringify(source, null, 2)}\n`);
  report(1, 'vmlinux extracted');
  return out;
}
