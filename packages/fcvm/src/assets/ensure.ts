/**
 * The library entry points for VM assets: `planAssets` names what the current inputs need,
 * `checkAssets` says what is present, `ensureAssets` builds what is missing (what `fcvm setup`
 * and the first `fcvm podman run` call).
 *
 * Build order: kernel (download + unpack) -> initrd and rootfs (both use its modules) -> test image.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FcvmConfig } from '../config.js';
import { type DataDir, ensureDataDir } from '../data-dir.js';
import { FcvmError } from '../errors.js';
import { findStaticBusybox, type StaticBusybox } from './busybox.js';
import { guestFileHashes } from './guest-files.js';
import { requireRoot } from './host-tools.js';
import { imagesDir, writeImageIndex } from './image-store.js';
import { buildInitrd, initrdAssetName } from './initramfs.js';
import { buildKernel, type KernelAsset, type KernelSource, kernelAsset, resolveKernelSourceCached } from './kernel.js';
import { type ProgressListener, timedStep } from './progress.js';
import { buildRootfs, rootfsAssetName, rootfsInputs } from './rootfs.js';
import { acquireBuildLock, type BuildDir, createBuildDir, publish, sweepStaleBuildDirs } from './store.js';
import { buildTestImage, TEST_IMAGE_REF, testImageAssetName } from './test-image.js';

export type AssetKind = 'kernel' | 'initrd' | 'rootfs' | 'testImage';

export interface AssetPlan {
  readonly kernelSource: KernelSource;
  readonly kernel: KernelAsset;
  readonly initrd: string;
  readonly rootfs: string;
  readonly testImage: string;
  readonly busybox: StaticBusybox;
  readonly config: FcvmConfig;
}

/** What a VM boots from. All paths exist once `ensureAssets` returns. */
export interface AssetPaths {
  /** Compressed kernel image (bzImage / Image.gz): QEMU. */
  readonly kernel: string;
  /** Uncompressed kernel: Firecracker. */
  readonly vmlinux: string;
  /** Base stage-1 initrd; per VM, pass it to `createAgentInitrd`. */
  readonly initrd: string;
  /** Root filesystem image (raw ext4); boot it through a copy-on-write layer, never directly. */
  readonly rootfs: string;
  /** docker-archive of localhost/fcvm-busybox:latest. */
  readonly testImage: string;
  readonly kernelRelease: string;
}

export interface AssetStatus {
  readonly kind: AssetKind;
  readonly name: string;
  readonly path: string;
  readonly present: boolean;
}

/** Names every asset the current inputs need (reads the local apt cache; builds nothing). */
export async function planAssets(dir: DataDir, config: FcvmConfig): Promise<AssetPlan> {
  if (config.kernel.path !== undefined) {
    throw new FcvmError(
      'CONFIG',
      'kernel.path is not supported by fcvm setup yet: remove it (or name a Debian package with kernel.package).',
    );
  }
  const source = await resolveKernelSourceCached(config, join(dir.tmp, 'kernel-source.json'));
  const kernel = kernelAsset(dir.assets, source);
  const busybox = findStaticBusybox();
  const initrdName = initrdAssetName({
    kernelAsset: kernel.name,
    busyboxSha256: busybox.sha256,
    stage1InitSha256: guestFileHashes(['stage1Init'])['stage1-init.sh']!,
  });
  const rootfsName = rootfsAssetName(rootfsInputs(config, kernel.name, busybox.sha256));
  return {
    kernelSource: source,
    kernel,
    initrd: join(dir.assets, initrdName),
    rootfs: join(dir.assets, rootfsName),
    testImage: join(imagesDir(dir.assets), testImageAssetName(busybox.sha256, source.arch)),
    busybox,
    config,
  };
}

export function assetStatuses(plan: AssetPlan): AssetStatus[] {
  const entry = (kind: AssetKind, path: string): AssetStatus => ({
    kind,
    name: path.slice(path.lastIndexOf('/') + 1),
    path,
    present: existsSync(path),
  });
  return [
    entry('kernel', plan.kernel.dir),
    entry('initrd', plan.initrd),
    entry('rootfs', plan.rootfs),
    entry('testImage', plan.testImage),
  ];
}

export async function checkAssets(dir: DataDir, config: FcvmConfig): Promise<AssetStatus[]> {
  return assetStatuses(await planAssets(dir, config));
}

function pathsOf(plan: AssetPlan): AssetPaths {
  return {
    kernel: plan.kernel.vmlinuz,
    vmlinux: plan.kernel.vmlinux,
    initrd: plan.initrd,
    rootfs: plan.rootfs,
    testImage: plan.testImage,
    kernelRelease: plan.kernel.release,
  };
}

export interface EnsureOptions {
  /** Rebuild every asset even when present. */
  readonly force?: boolean;
  readonly onProgress?: ProgressListener;
  readonly signal?: AbortSignal;
}

/**
 * Builds the missing assets (all of them with `force`) and returns their paths. A second call
 * with the same inputs touches nothing. Concurrent callers on one data dir wait for each other.
 */
export async function ensureAssets(dir: DataDir, config: FcvmConfig, options: EnsureOptions = {}): Promise<AssetPaths> {
  const plan = await planAssets(dir, config);
  const needed = (path: string) => options.force === true || !existsSync(path);
  const missing = assetStatuses(plan)
    .filter((status) => needed(status.path))
    .map((status) => status.kind);
  if (missing.length === 0) {
    await writeImageIndex(dir.assets, { images: { [TEST_IMAGE_REF]: testImageEntry(plan) } });
    return pathsOf(plan);
  }

  // Fail before downloading anything when the one step that needs root would fail anyway.
  if (missing.includes('rootfs')) requireRoot('Building the guest root filesystem (mmdebstrap --mode=root, chroot)');
  ensureDataDir(dir);
  const lock = await acquireBuildLock(dir, {
    onWait: () => options.onProgress?.({ type: 'note', message: 'waiting for another fcvm setup to finish...' }),
  });
  let build: BuildDir | undefined;
  try {
    for (const path of await sweepStaleBuildDirs(dir)) {
      options.onProgress?.({ type: 'note', message: `removed the scratch directory of an interrupted build: ${path}` });
    }
    build = await createBuildDir(dir);
    await buildMissing(plan, build, { ...options, holdLockFd: lock.fd }, needed);
    await writeImageIndex(dir.assets, { images: { [TEST_IMAGE_REF]: testImageEntry(plan) } });
  } finally {
    try {
      await build?.dispose();
    } finally {
      lock.release();
    }
  }
  return pathsOf(plan);
}

function testImageEntry(plan: AssetPlan) {
  return { archive: plan.testImage.slice(plan.testImage.lastIndexOf('/') + 1), format: 'docker-archive' as const };
}

async function buildMissing(
  plan: AssetPlan,
  build: BuildDir,
  options: EnsureOptions & { holdLockFd: number },
  needed: (path: string) => boolean,
): Promise<void> {
  const { onProgress, signal } = options;
  // Re-checked under the lock: a concurrent setup may have published some assets meanwhile.
  const kernel = plan.kernel;
  if (needed(kernel.dir)) {
    await timedStep(onProgress, 'kernel', `guest kernel ${kernel.release}`, async (report) => {
      const built = await buildKernel(plan.kernelSource, build, report);
      await publish(built, kernel.dir, build);
    });
  }
  if (needed(plan.initrd)) {
    await timedStep(onProgress, 'initrd', 'stage-1 initramfs', async () => {
      const out = join(build.path, 'initrd.cpio.gz');
      await buildInitrd({ modulesDir: kernel.modulesDir, busybox: plan.busybox, outPath: out });
      await publish(out, plan.initrd, build);
    });
  }
  if (needed(plan.rootfs)) {
    await timedStep(onProgress, 'rootfs', 'guest root filesystem (mmdebstrap)', async (report) => {
      const out = join(build.path, 'rootfs.ext4');
      await buildRootfs({
        inputs: rootfsInputs(plan.config, kernel.name, plan.busybox.sha256),
        modulesDir: kernel.modulesDir,
        kernelRelease: kernel.release,
        busybox: plan.busybox,
        workDir: build.path,
        outPath: out,
        report,
        signal,
        holdLockFd: options.holdLockFd,
      });
      await publish(out, plan.rootfs, build);
    });
  }
  if (needed(plan.testImage)) {
    await timedStep(onProgress, 'testImage', `test image ${TEST_IMAGE_REF}`, async () => {
      const out = join(build.path, 'test-image.tar');
      await buildTestImage({ busybox: plan.busybox, arch: plan.kernelSource.arch, outPath: out });
      await publish(out, plan.testImage, build);
    });
  }
}
