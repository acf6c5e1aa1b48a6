/**
 * The guest root filesystem (`rootfs-<hash>.ext4`): Debian by mmdebstrap (minbase + the packages
 * below), the guest kernel's modules, fcvm's guest init and config, written into a sparse ext4
 * image with `mkfs.ext4 -d`. Every VM boots it through its own copy-on-write layer, so it is
 * never written after it is published.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FcvmConfig } from '../config.js';
import type { StaticBusybox } from './busybox.js';
import { type GuestFile, guestFileHashes, readGuestFile } from './guest-files.js';
import { requireHostTool, requireRoot, runTool } from './host-tools.js';
import type { ReportFraction } from './progress.js';
import { inputHash, removeTree, sha256OfText } from './store.js';

/** Bump when the build steps change in a way the inputs do not show. */
const ROOTFS_BUILDER_VERSION = 1;

/** Size of the (sparse) image: the system uses about 450 MiB; the rest holds container images. */
export const ROOTFS_SIZE_MIB = 2048;

/**
 * Installed on top of minbase. No systemd or udev: PID 1 is fcvm-init, and podman is configured
 * for cgroupfs and a file events logger (guest/containers.conf).
 */
export const GUEST_PACKAGES = [
  'podman',
  'crun',
  'conmon',
  'catatonit',
  'fuse-overlayfs',
  'uidmap',
  'netavark',
  'aardvark-dns',
  'iptables',
  'chrony',
  'iproute2',
  'iputils-arping',
  'nodejs',
  'ca-certificates',
  'procps',
  'kmod',
] as const;

const ROOTFS_GUEST_FILES: readonly GuestFile[] = ['guestInit', 'containersConf', 'hostname', 'hosts', 'resolvConf'];

/** Where mmdebstrap gets its packages: the config's mirror, else the host's own apt sources (same suite), else mmdebstrap's default. */
export type MirrorSource =
  | { readonly kind: 'config'; readonly url: string }
  | { readonly kind: 'host-sources'; readonly path: string; readonly sha256: string }
  | { readonly kind: 'default' };

const HOST_SOURCES = '/etc/apt/sources.list.d/debian.sources';

function hostCodename(): string | undefined {
  try {
    return /^VERSION_CODENAME=(.*)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1]?.replace(/"/g, '');
  } catch {
    return undefined;
  }
}

export function mirrorSource(config: FcvmConfig): MirrorSource {
  if (config.rootfs.mirror !== undefined) return { kind: 'config', url: config.rootfs.mirror };
  // The host's sources name the host's suite (and its security and updates lines): only reuse them
  // for that suite.
  if (existsSync(HOST_SOURCES) && hostCodename() === config.rootfs.suite) {
    return { kind: 'host-sources', path: HOST_SOURCES, sha256: sha256OfText(readFileSync(HOST_SOURCES)) };
  }
  return { kind: 'default' };
}

export function guestPackages(config: FcvmConfig): string[] {
  return [...new Set([...GUEST_PACKAGES, ...config.rootfs.extra_packages])].sort();
}

export interface RootfsInputs {
  readonly suite: string;
  readonly packages: readonly string[];
  readonly mirror: MirrorSource;
  readonly kernelAsset: string;
  readonly busyboxSha256: string;
  readonly guestFiles: Record<string, string>;
  readonly sizeMib: number;
}

export function rootfsInputs(config: FcvmConfig, kernelAsset: string, busyboxSha256: string): RootfsInputs {
  return {
    suite: config.rootfs.suite,
    packages: guestPackages(config),
    mirror: mirrorSource(config),
    kernelAsset,
    busyboxSha256,
    guestFiles: guestFileHashes(ROOTFS_GUEST_FILES),
    sizeMib: ROOTFS_SIZE_MIB,
  };
}

export function rootfsAssetName(inputs: RootfsInputs): string {
  return `rootfs-${inputHash({ builder: ROOTFS_BUILDER_VERSION, ...inputs })}.ext4`;
}

/** mmdebstrap's "I: ..." phase lines and how far along each one is. */
const MMDEBSTRAP_PHASES: ReadonlyArray<readonly [RegExp, number]> = [
  [/^I: automatically chosen|^I: chroot architecture/, 0.02],
  [/^I: running apt-get update/, 0.05],
  [/^I: downloading packages/, 0.1],
  [/^I: extracting archives/, 0.25],
  [/^I: installing essential packages/, 0.35],
  [/^I: installing remaining packages/, 0.55],
  [/^I: cleaning package lists/, 0.9],
];

export function mmdebstrapArgv(mmdebstrap: string, inputs: RootfsInputs, targetDir: string): string[] {
  const argv = [
    mmdebstrap,
    '--mode=root',
    '--variant=minbase',
    '--aptopt=APT::Install-Recommends "false"',
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    `--include=${inputs.packages.join(',')}`,
    inputs.suite,
    targetDir,
  ];
  if (inputs.mirror.kind === 'config') argv.push(inputs.mirror.url);
  if (inputs.mirror.kind === 'host-sources') argv.push(inputs.mirror.path);
  return argv;
}

export async function buildRootfs(options: {
  inputs: RootfsInputs;
  modulesDir: string;
  kernelRelease: string;
  busybox: StaticBusybox;
  workDir: string;
  /** The build lock's fd: the long-running tools hold the lock while they live (see runTool). */
  holdLockFd?: number;
  outPath: string;
  report: ReportFraction;
  signal?: AbortSignal;
}): Promise<void> {
  requireRoot('Building the guest root filesystem (mmdebstrap --mode=root, chroot)');
  const mmdebstrap = requireHostTool('mmdebstrap', 'Building the guest root filesystem');
  const mkfs = requireHostTool('mkfs.ext4', 'Writing the guest root filesystem image');
  const chroot = requireHostTool('chroot', 'Indexing the guest kernel modules');
  const { inputs, report } = options;
  const root = join(options.workDir, 'rootfs');

  await runTool(mmdebstrapArgv(mmdebstrap, inputs, root), {
    signal: options.signal,
    holdLockFd: options.holdLockFd,
    onLine: (line) => {
      for (const [pattern, fraction] of MMDEBSTRAP_PHASES) {
        if (pattern.test(line)) report(fraction * 0.85, line.replace(/^I: /, ''));
      }
    },
  });

  // /lib is a symlink to usr/lib in the guest: copy to the real directory.
  await mkdir(join(root, 'usr/lib/modules'), { recursive: true });
  await cp(options.modulesDir, join(root, 'usr/lib/modules', options.kernelRelease), { recursive: true });
  // The host may have no depmod (or another version); the guest's own kmod is the right one.
  await runTool([chroot, root, 'depmod', options.kernelRelease], {
    signal: options.signal,
    holdLockFd: options.holdLockFd,
  });
  report(0.88, 'kernel modules installed');

  const install = async (path: string, data: Buffer, mode: number) => {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), data);
    await chmod(join(root, path), mode);
  };
  await install('usr/sbin/fcvm-init', readGuestFile('guestInit'), 0o755);
  await install('usr/local/bin/busybox', options.busybox.binary, 0o755);
  await install('etc/containers/containers.conf', readGuestFile('containersConf'), 0o644);
  await install('etc/hostname', readGuestFile('hostname'), 0o644);
  await install('etc/hosts', readGuestFile('hosts'), 0o644);
  await rm(join(root, 'etc/resolv.conf'), { force: true });
  await install('etc/resolv.conf', readGuestFile('resolvConf'), 0o644);
  // Podman's CNI default names a plugin the guest does not have (netavark is used): a warning per run.
  await rm(join(root, 'etc/cni/net.d/87-podman-bridge.conflist'), { force: true });

  await runTool([mkfs, '-q', '-F', '-L', 'fcvm-root', '-d', root, options.outPath, `${inputs.sizeMib}M`], {
    signal: options.signal,
    holdLockFd: options.holdLockFd,
  });
  await removeTree(root);
  report(1, 'image written');
}
