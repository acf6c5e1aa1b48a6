/**
 * `--hypervisor auto|firecracker|qemu`: auto picks Firecracker when /dev/kvm and a firecracker
 * binary are usable, else QEMU, and says which it picked (and why) at info level.
 */
import type { FcvmConfig, HypervisorChoice } from '../config.js';
import type { DataDir } from '../data-dir.js';
import { FcvmError } from '../errors.js';
import { log } from '../log.js';
import { createFirecracker, probeFirecracker, versionCacheFile } from './firecracker/index.js';
import { createQemu, probeQemu } from './qemu/index.js';
import type { Hypervisor } from './types.js';

export async function selectHypervisor(
  choice: HypervisorChoice,
  config: FcvmConfig,
  dir: DataDir,
): Promise<Hypervisor> {
  const effective = choice === 'auto' ? config.default_hypervisor : choice;
  const firecrackerOptions = { dataDir: dir, configuredBinary: config.firecracker.binary };
  if (effective === 'firecracker') return createFirecracker(firecrackerOptions);
  if (effective === 'qemu') return createQemuChecked(config);

  const firecracker = await probeFirecracker({
    configured: config.firecracker.binary,
    versionCacheFile: versionCacheFile(dir),
  });
  if (firecracker.usable) {
    log.info(`hypervisor: firecracker (${firecracker.binary})`);
    return createFirecracker(firecrackerOptions);
  }
  const qemu = await createQemuChecked(config);
  log.info(
    `hypervisor: qemu (${qemu.capabilities.hardwareAccelerated ? 'KVM' : 'software emulation'}); firecracker not used: ${firecracker.reason}`,
  );
  return qemu;
}

async function createQemuChecked(config: FcvmConfig): Promise<Hypervisor> {
  const probe = await probeQemu(config.qemu.binary);
  if (!probe.available) {
    throw new FcvmError('MISSING_HOST_TOOL', `QEMU cannot be used: ${probe.reason}.`);
  }
  return createQemu({ binary: probe.binary });
}
