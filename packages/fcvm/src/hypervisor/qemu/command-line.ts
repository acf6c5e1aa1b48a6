/**
 * The QEMU command line for a microvm guest. Boot and restore share this builder: a restore must
 * describe exactly the machine that was saved (same devices, same order), or QEMU rejects the state.
 *
 * Device order is the guest's device order: disks first (vda, vdb, ...), then the NIC, the entropy
 * source and the agent's virtio-serial port. microvm hands the virtio-mmio slots to the kernel on its
 * command line (auto-kernel-cmdline), so the guest needs no device tree or ACPI tables for them.
 */
import { AGENT_PORT_NAME } from '@fcvm/protocol';
import { FcvmError } from '../../errors.js';
import type { DiskSpec, NetSpec, VmSpec } from '../types.js';
import type { TscFrequency } from './host-clock.js';

/** How guest RAM is backed. */
export type GuestMemory =
  /** Anonymous memory: snapshots then carry the RAM in the migration stream. */
  | { readonly kind: 'anonymous' }
  /** Anonymous 2 MiB huge pages (memfd on hugetlbfs). */
  | { readonly kind: 'hugetlb' }
  /**
   * A file mapping. `shared` (MAP_SHARED): guest writes land in the file, which is what a snapshot
   * hands to clones. Not shared (MAP_PRIVATE): a clone reads the file and keeps its writes private.
   */
  | { readonly kind: 'file'; readonly path: string; readonly shared: boolean };

/** `kvm-or-tcg`: KVM, falling back to TCG if QEMU cannot initialise it. */
export type Accelerator = 'kvm' | 'tcg' | 'kvm-or-tcg';

export interface QemuMachine
  extends Pick<
    VmSpec,
    'vmId' | 'kernelPath' | 'initrdPath' | 'bootArgs' | 'vcpus' | 'memoryMib' | 'disks' | 'net' | 'consoleLogPath'
  > {
  readonly memory: GuestMemory;
  readonly accel: Accelerator;
  /** Host TSC rate for `tsc_early_khz=`; null leaves the kernel to calibrate (unsafe under TCG). */
  readonly tsc: TscFrequency | null;
  readonly qmpSocketPath: string;
  readonly agentSocketPath: string;
  /** Not on the command line: the socket the migration stream passes through during snapshots and restores. */
  readonly migrationSocketPath: string;
  /** `paused`: CPUs held (`-S`) until QMP `cont`. `incoming`: wait for a migration stream (`-incoming defer`). */
  readonly start: 'paused' | 'incoming';
}

/** Every socket QEMU creates for a machine (removed when the VM ends). */
export function machineSockets(machine: QemuMachine): string[] {
  return [machine.qmpSocketPath, machine.agentSocketPath, machine.migrationSocketPath];
}

/** QEMU option values separate keys with commas; a literal comma is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

function hasParam(cmdline: string, name: string): boolean {
  return cmdline.split(/\s+/).some((word) => word === name || word.startsWith(`${name}=`));
}

/** The guest kernel command line: the caller's, plus what this backend needs unless the caller set it. */
export function kernelCommandLine(bootArgs: string, tsc: TscFrequency | null): string {
  const words = [bootArgs.trim()];
  // microvm's only console is the ISA serial port.
  if (!hasParam(bootArgs, 'console')) words.push('console=ttyS0');
  // A panicking guest reboots at once, and -no-reboot turns that into a QEMU exit instead of a hang.
  if (!hasParam(bootArgs, 'panic')) words.push('panic=-1');
  if (tsc !== null && !hasParam(bootArgs, 'tsc_early_khz')) words.push(`tsc_early_khz=${tsc.khz}`);
  // Under emulation the guest otherwise marks its TSC unstable and keeps time with jiffies, which
  // lost over a second in 8 s on a busy host; the emulated TSC follows the host's. Only with the
  // exact rate: a wrong one would make the guest clock run fast or slow (host-clock.ts).
  if (tsc?.exact === true && !hasParam(bootArgs, 'tsc')) words.push('tsc=reliable');
  return words.filter((word) => word !== '').join(' ');
}

function acceleratorArgs(accel: Accelerator): string[] {
  switch (accel) {
    case 'kvm':
      return ['-accel', 'kvm'];
    case 'tcg':
      return ['-accel', 'tcg'];
    case 'kvm-or-tcg':
      return ['-accel', 'kvm', '-accel', 'tcg'];
  }
}

/**
 * Guest RAM is always a backend object named `ram`, also when it is plain anonymous memory: the
 * migration stream names RAM blocks, and a VM saved with one kind of backing (a clone's private file
 * mapping) must load into another (anonymous memory) under the same name.
 */
function memoryBackend(memoryMib: number, memory: GuestMemory): string {
  const common = `id=ram,size=${memoryMib}M`;
  switch (memory.kind) {
    case 'anonymous':
      return `memory-backend-ram,${common}`;
    case 'hugetlb':
      return `memory-backend-memfd,${common},hugetlb=on,hugetlbsize=2M`;
    case 'file':
      return `memory-backend-file,${common},mem-path=${escapeOptionValue(memory.path)},share=${memory.shared ? 'on' : 'off'}`;
  }
}

function diskArgs(disk: DiskSpec, index: number): string[] {
  const id = `disk${index}`;
  // cache=unsafe skips host fsyncs: right for a qcow2 overlay that lives and dies with the VM. A raw
  // image may be the user's data (a volume), so it keeps the default write-back cache and its flushes.
  const cache = disk.format === 'qcow2' ? 'unsafe' : 'writeback';
  const drive = [
    `id=${id}`,
    `file=${escapeOptionValue(disk.path)}`,
    `format=${disk.format}`,
    'if=none',
    `cache=${cache}`,
    `read-only=${disk.readOnly ? 'on' : 'off'}`,
    // A host write or read error (the data dir's filesystem full) is the guest's I/O error, not a
    // VM that QEMU stops silently: the container fails visibly and fcvm says why (qemu-vm.ts).
    'werror=report',
    'rerror=report',
  ];
  return ['-drive', drive.join(','), '-device', `virtio-blk-device,drive=${id}`];
}

function netArgs(net: NetSpec): string[] {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(net.guestMac)) {
    throw new FcvmError(
      'CONFIG',
      `The guest MAC address ${JSON.stringify(net.guestMac)} is not of the form 52:54:00:12:34:56.`,
    );
  }
  return [
    '-netdev',
    `tap,id=net0,ifname=${escapeOptionValue(net.tapDevice)},script=no,downscript=no`,
    '-device',
    `virtio-net-device,netdev=net0,mac=${net.guestMac}`,
  ];
}

/** argv after the binary name. */
export function qemuArgs(machine: QemuMachine): string[] {
  const args = [
    '-name',
    escapeOptionValue(`fcvm-${machine.vmId}`),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    // A guest reboot or poweroff ends QEMU: the VM's lifetime is the process's lifetime.
    '-no-reboot',
    '-machine',
    'microvm,memory-backend=ram',
    ...acceleratorArgs(machine.accel),
    '-smp',
    String(machine.vcpus),
    '-m',
    `${machine.memoryMib}M`,
    '-object',
    memoryBackend(machine.memoryMib, machine.memory),
    '-kernel',
    machine.kernelPath,
    ...(machine.initrdPath === null ? [] : ['-initrd', machine.initrdPath]),
    '-append',
    kernelCommandLine(machine.bootArgs, machine.tsc),
    '-chardev',
    `file,id=console,path=${escapeOptionValue(machine.consoleLogPath)},append=on`,
    '-serial',
    'chardev:console',
    '-chardev',
    `socket,id=qmp,path=${escapeOptionValue(machine.qmpSocketPath)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
  ];
  machine.disks.forEach((disk, index) => {
    args.push(...diskArgs(disk, index));
  });
  if (machine.net !== null) args.push(...netArgs(machine.net));
  args.push(
    // Guest entropy from the start: a fresh guest's getrandom() would otherwise wait on jitter entropy.
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-device,rng=rng0',
    '-device',
    'virtio-serial-device',
    '-chardev',
    `socket,id=agent,path=${escapeOptionValue(machine.agentSocketPath)},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
  );
  args.push(...(machine.start === 'paused' ? ['-S'] : ['-incoming', 'defer']));
  return args;
}
