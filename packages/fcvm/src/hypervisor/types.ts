/**
 * What orchestration needs from a VMM, with one implementation per backend (firecracker/, qemu/).
 * Orchestration reads `capabilities` and never branches on `kind`.
 *
 * Call order:
 *   const vmm = await selectHypervisor(...)            // select.ts: auto | firecracker | qemu
 *   const vm = await vmm.boot(spec, signal)            // or vmm.restore(restoreSpec, signal)
 *   const channel = await vm.openChannel(signal)       // byte stream to fc-agent; again after a restore
 *   await vm.pause(); await vm.snapshot(target); await vm.resume();
 *   await vm.stop();                                   // idempotent; `vm.exited` settles in every case
 *
 * A VmHandle owns its VMM process: the process dies with fcvm (also on SIGKILL) and `stop()`
 * removes the sockets the backend created. Files named by the spec (disks, memory files) belong to
 * the caller.
 */

export type HypervisorKind = 'firecracker' | 'qemu';

export interface Capabilities {
  /** Guest memory can be served by a userfaultfd memory server (Firecracker `Uffd` backend). */
  readonly uffdRestore: boolean;
  /** Snapshots of only the pages dirtied since the restore they started from. */
  readonly diffSnapshots: boolean;
  /** A metadata service (Firecracker MMDS) the guest can read over HTTP. */
  readonly metadataService: boolean;
  /** Host-to-guest channel transport. */
  readonly channel: 'vsock' | 'virtio-serial';
  /** KVM acceleration in use (false: software emulation, e.g. QEMU TCG). */
  readonly hardwareAccelerated: boolean;
  /** Disk image formats the VMM reads; qcow2 lets a VM's root disk be a tiny overlay. */
  readonly diskFormats: readonly ('raw' | 'qcow2')[];
  /** Kernel image the VMM boots: an uncompressed ELF vmlinux, or the distribution's compressed bzImage. */
  readonly kernelFormat: 'vmlinux' | 'bzimage';
}

export interface DiskSpec {
  /** Stable id; the root disk is `rootfs`. Guest devices follow the array order: vda, vdb, ... */
  readonly id: string;
  readonly path: string;
  readonly readOnly: boolean;
  /** Disk image format; Firecracker accepts raw only. */
  readonly format: 'raw' | 'qcow2';
}

export interface NetSpec {
  /** Host tap device (must exist, inside `netnsPath` when given). */
  readonly tapDevice: string;
  readonly guestMac: string;
}

export interface VmSpec {
  readonly vmId: string;
  /** Directory for the VMM's sockets and logs; exists and belongs to this VM. */
  readonly vmDir: string;
  readonly kernelPath: string;
  readonly initrdPath: string | null;
  /** Kernel command line; the backend appends what it needs itself (console, tsc_early_khz, ...). */
  readonly bootArgs: string;
  readonly vcpus: number;
  readonly memoryMib: number;
  readonly hugepages: boolean;
  /** Firecracker: machine-config track_dirty_pages (needed for diff snapshots later). */
  readonly trackDirtyPages: boolean;
  readonly disks: readonly DiskSpec[];
  readonly net: NetSpec | null;
  /**
   * Back guest RAM with this file (shared mapping) so snapshots can hand it to clones
   * copy-on-write (QEMU). Created 0600 by the backend. Ignored by backends that do not need it.
   */
  readonly memoryFilePath: string | null;
  /** Run the VMM inside this network namespace (`/run/netns/NAME` or `/proc/PID/ns/net`). */
  readonly netnsPath: string | null;
  /** Metadata for the guest (Firecracker MMDS V2); ignored without `capabilities.metadataService`. */
  readonly metadata: unknown;
  /** Guest serial console and VMM log are appended here. */
  readonly consoleLogPath: string;
  /** Put the VMM into its own cgroup scope with swap disabled (see cgroup/). */
  readonly noSwap: boolean;
}

export type SnapshotKind = 'full' | 'diff';

export interface SnapshotTarget {
  /** Directory to write into (exists, empty). Files: memory.bin, vmstate.bin. */
  readonly dir: string;
  readonly kind: SnapshotKind;
}

export interface SnapshotFiles {
  readonly memoryPath: string;
  readonly vmstatePath: string;
  readonly kind: SnapshotKind;
}

export type MemorySource =
  | { readonly backend: 'file'; readonly path: string }
  | { readonly backend: 'uffd'; readonly socketPath: string };

export interface RestoreSpec extends Omit<VmSpec, 'memoryFilePath' | 'trackDirtyPages'> {
  readonly vmstatePath: string;
  readonly memory: MemorySource;
  /** See policy.ts `decideTrackDirtyPages`. */
  readonly trackDirtyPages: boolean;
  /** Resume the guest as soon as it is loaded. */
  readonly resume: boolean;
}

export interface VmExit {
  /** Exit status of the VMM process, or null if it died by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface VmHandle {
  readonly kind: HypervisorKind;
  readonly capabilities: Capabilities;
  /** PID of the VMM process. */
  readonly pid: number;
  /** Settles when the VMM process has exited, however that happened. */
  readonly exited: Promise<VmExit>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** The VM must be paused. */
  snapshot(target: SnapshotTarget): Promise<SnapshotFiles>;
  /** Replace the guest metadata (MMDS PUT replaces the whole store). */
  setMetadata(data: unknown): Promise<void>;
  /** A fresh byte stream to the agent's channel. */
  openChannel(signal?: AbortSignal): Promise<import('node:net').Socket>;
  /** Asks the guest to stop, then ends the VMM after `graceMs`; removes the VMM's sockets. Idempotent. */
  stop(options?: { graceMs?: number }): Promise<VmExit>;
}

export interface Hypervisor {
  readonly kind: HypervisorKind;
  readonly capabilities: Capabilities;
  boot(spec: VmSpec, signal?: AbortSignal): Promise<VmHandle>;
  restore(spec: RestoreSpec, signal?: AbortSignal): Promise<VmHandle>;
}
