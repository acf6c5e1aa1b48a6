/**
 * Serves one clone's page faults from the snapshot's memory file (reference firecracker-protocols
 * §4.3). Runs on the clone's own worker thread and blocks it in poll(2) between events.
 *
 * Per wake-up: read every pending `uffd_msg`, apply all REMOVE events of the batch first (a fault can
 * be read before the REMOVE of the same page, because vCPU threads and the VMM thread race), then
 * serve the faults in order:
 *   - inside a removed range, or beyond the end of the file: zero page (UFFDIO_ZEROPAGE for 4 KiB;
 *     hugetlbfs has no ZEROPAGE, so 2 MiB pages are copied from a zero buffer);
 *   - straddling the end of the file (2 MiB pages only; the kernel zero-fills the tail of a 4 KiB
 *     file page): copied from a bounce buffer holding the file's tail and zeros;
 *   - otherwise UFFDIO_COPY straight from the read-only mapping of the file.
 * EEXIST means another thread's fault already filled the page: success. EAGAIN means the address
 * space is changing (a REMOVE is queued): read pending events, then retry. ESRCH/ENOENT mean the
 * clone's memory is gone (it is exiting). Anything else is a failure of this clone only.
 */
import { EAGAIN, EEXIST, EINVAL, ENOENT, ESRCH } from '../sys/errno.js';
import { POLLERR, POLLHUP, POLLIN, POLLNVAL, PollSet, readFd } from '../sys/fd.js';
import {
  copyMemory,
  fillMemory,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  mmap,
  munmap,
  PROT_READ,
  PROT_WRITE,
} from '../sys/mman.js';
import {
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMOVE,
  UFFD_MSG_SIZE,
  UffdOperations,
  uffdFaultAddress,
  uffdMessageEvent,
  uffdRemoveEnd,
  uffdRemoveStart,
} from '../sys/uffd.js';
import type { CloneStatsWriter } from './clone-stats.js';
import { type GuestRegion, PAGE_SIZE_2M, PAGE_SIZE_4K } from './handshake.js';
import { RemovedRanges } from './removed-ranges.js';

/** The snapshot memory file as mapped (read-only) by the server process. */
export interface MappedMemory {
  readonly address: number;
  /** File length in bytes; bytes beyond it read as zero. */
  readonly size: number;
}

export interface FaultServerOptions {
  readonly uffd: number;
  /** The handshake connection: EOF on it means the VMM is gone (Firecracker >= 1.12 keeps it open). */
  readonly connection: number;
  /** Readable once the server shuts down. */
  readonly stopFd: number;
  readonly regions: readonly GuestRegion[];
  readonly memory: MappedMemory;
  readonly stats: CloneStatsWriter;
  /** Called when the connection closed but the process may still live (VMMs before 1.12 close it early). */
  readonly isPeerAlive: () => boolean;
  /** How often to check on the peer while idle. */
  readonly idleCheckMs?: number;
}

export type ServeEnd =
  | { readonly reason: 'stopped' }
  | { readonly reason: 'peer-gone' }
  | { readonly reason: 'failed'; readonly message: string };

const EVENTS_PER_READ = 64;
/** EAGAIN lasts while the VMM's address space changes; give up on a clone only after this long. */
const EAGAIN_GIVE_UP_MS = 10_000;
/** Retries that spin before each further retry sleeps 1 ms (the VMM thread needs the CPU to finish). */
const EAGAIN_SPINS = 16;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

class CloneFailure extends Error {}

export function serveFaults(options: FaultServerOptions): ServeEnd {
  const server = new FaultServer(options);
  try {
    return server.run();
  } finally {
    server.release();
  }
}

class FaultServer {
  private readonly ops: UffdOperations;
  private readonly events = Buffer.alloc(EVENTS_PER_READ * UFFD_MSG_SIZE);
  private readonly removed = new RemovedRanges();
  private readonly pending: number[] = [];
  private hugeScratch: { address: number; zeroed: boolean } | undefined;
  private peerGone = false;
  private readonly probe = Buffer.alloc(256);

  constructor(private readonly options: FaultServerOptions) {
    this.ops = new UffdOperations(options.uffd);
  }

  run(): ServeEnd {
    const { uffd, connection, stopFd } = this.options;
    const polls = new PollSet([uffd, connection, stopFd]);
    let idleCheckMs = this.options.idleCheckMs ?? 1000;
    for (;;) {
      const ready = polls.wait(idleCheckMs);
      if (polls.revents(2) !== 0) return { reason: 'stopped' };
      if (ready === 0) {
        if (polls.fd(1) < 0 && !this.options.isPeerAlive()) return { reason: 'peer-gone' };
        continue;
      }
      if (polls.revents(1) !== 0 && this.connectionClosed()) {
        if (!this.options.isPeerAlive()) return { reason: 'peer-gone' };
        // Either the process is still exiting (it closes its files before it is gone), or it is a
        // Firecracker before 1.12 that closes the socket after the handshake: look again soon.
        polls.setFd(1, -1);
        idleCheckMs = Math.min(idleCheckMs, 200);
      }
      const uffdEvents = polls.revents(0);
      if ((uffdEvents & (POLLERR | POLLNVAL)) !== 0)
        return { reason: 'failed', message: 'the userfaultfd reported an error' };
      if ((uffdEvents & (POLLIN | POLLHUP)) !== 0) {
        try {
          this.drainEvents();
          this.servePending();
        } catch (err) {
          // The caller counts the failure in the clone's stats.
          if (err instanceof CloneFailure) return { reason: 'failed', message: err.message };
          throw err;
        }
        if (this.peerGone) return { reason: 'peer-gone' };
      }
    }
  }

  release(): void {
    if (this.hugeScratch) munmap(this.hugeScratch.address, PAGE_SIZE_2M);
    this.hugeScratch = undefined;
  }

  /** True when the peer closed the connection; data on it (Firecracker sends none) is discarded. */
  private connectionClosed(): boolean {
    const n = readFd(this.options.connection, this.probe);
    return n === 0 || (n < 0 && n !== -EAGAIN);
  }

  /** Reads every pending event: REMOVE applies at once, faults queue up. */
  private drainEvents(): void {
    for (;;) {
      const n = readFd(this.options.uffd, this.events);
      if (n === -EAGAIN) return;
      if (n < 0) throw new CloneFailure(`reading the userfaultfd failed with errno ${-n}`);
      if (n === 0) return;
      const count = Math.floor(n / UFFD_MSG_SIZE);
      for (let i = 0; i < count; i++) this.accept(i);
      if (count < EVENTS_PER_READ) return;
    }
  }

  /** Takes in the index-th message of the last read. */
  private accept(index: number): void {
    const event = uffdMessageEvent(this.events, index);
    if (event === UFFD_EVENT_PAGEFAULT) this.pending.push(uffdFaultAddress(this.events, index));
    else if (event === UFFD_EVENT_REMOVE) {
      this.removed.add(uffdRemoveStart(this.events, index), uffdRemoveEnd(this.events, index));
      this.options.stats.add('removes');
    }
    // Firecracker negotiates no other event (FORK, REMAP, UNMAP need features it never requests).
  }

  private servePending(): void {
    // Index walk, not shift(): servePage may append (via drainEvents on EAGAIN) while we iterate.
    for (let i = 0; i < this.pending.length; i++) this.servePage(this.pending[i]!);
    this.pending.length = 0;
  }

  private servePage(address: number): void {
    const region = this.regionOf(address);
    const pageSize = region.pageSize;
    const page = address - ((address - region.base) % pageSize);
    let giveUpAt = 0;
    for (let attempt = 0; ; attempt++) {
      const errno = this.fill(region, page);
      if (errno === 0 || errno === EEXIST) {
        this.options.stats.add('faults');
        return;
      }
      if (errno === ESRCH || errno === ENOENT) {
        // The clone's address space is going away: nobody waits for this page any more.
        this.peerGone = true;
        return;
      }
      if (errno === EAGAIN) {
        if (attempt === 0) giveUpAt = Date.now() + EAGAIN_GIVE_UP_MS;
        else if (Date.now() > giveUpAt)
          throw new CloneFailure(`the page at 0x${page.toString(16)} stayed busy (EAGAIN) for ${EAGAIN_GIVE_UP_MS} ms`);
        if (attempt >= EAGAIN_SPINS) Atomics.wait(sleeper, 0, 0, 1);
        this.options.stats.add('eagain_retries');
        this.drainEvents();
        continue;
      }
      throw new CloneFailure(
        `serving the page at 0x${page.toString(16)} failed with errno ${errno}${errno === EINVAL ? ' (misaligned or unregistered range)' : ''}`,
      );
    }
  }

  private regionOf(address: number): GuestRegion {
    for (const region of this.options.regions) {
      if (address >= region.base && address < region.base + region.size) return region;
    }
    throw new CloneFailure(`a fault at 0x${address.toString(16)} lies outside every region of the handshake`);
  }

  /** Fills one page; returns 0 or the errno of the ioctl. */
  private fill(region: GuestRegion, page: number): number {
    const pageSize = region.pageSize;
    const { memory, stats } = this.options;
    const fileOffset = region.offset + (page - region.base);
    const available = memory.size - fileOffset;
    if (this.removed.overlaps(page, pageSize) || available <= 0) {
      const errno = this.zeroFill(page, pageSize);
      if (errno === 0) {
        stats.add('zero_pages');
        stats.add('bytes', pageSize);
      }
      return errno;
    }
    let source = memory.address + fileOffset;
    if (available < pageSize && pageSize !== PAGE_SIZE_4K) {
      source = this.scratch();
      copyMemory(source, memory.address + fileOffset, available);
      fillMemory(source + available, 0, pageSize - available);
      this.hugeScratch!.zeroed = false;
    }
    const errno = this.ops.copy(page, source, pageSize);
    if (errno === 0) stats.add('bytes', pageSize);
    return errno;
  }

  private zeroFill(page: number, pageSize: number): number {
    if (pageSize === PAGE_SIZE_4K) return this.ops.zeroPage(page, pageSize);
    const source = this.scratch();
    if (!this.hugeScratch!.zeroed) {
      fillMemory(source, 0, PAGE_SIZE_2M);
      this.hugeScratch!.zeroed = true;
    }
    return this.ops.copy(page, source, pageSize);
  }

  /** A 2 MiB anonymous buffer for zero and partial huge pages, mapped on first need. */
  private scratch(): number {
    this.hugeScratch ??= {
      address: mmap(PAGE_SIZE_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS),
      zeroed: true,
    };
    return this.hugeScratch.address;
  }
}
