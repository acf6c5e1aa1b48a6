/**
 * The UFFD memory server: one listening Unix socket for one snapshot, any number of clones.
 *
 * Threads: the main thread never blocks and never touches a clone's fault path: it starts workers and reads
 * their counters. Each clone has its own worker thread (clone-worker.ts) that blocks in poll(2) on
 * that clone's userfaultfd, so a busy clone cannot starve another and a failing one ends alone.
 * One extra worker is always waiting on the listening socket (the "standby"): a new clone's first
 * faults, which arrive right after its handshake, find a thread already running. All workers also
 * poll one eventfd that the main thread signals to stop them.
 */
import { closeSync, fstatSync, openSync, rmSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { log } from '../log.js';
import { closeFd, createEventFd, signalEventFd } from '../sys/fd.js';
import { MAP_PRIVATE, mmap, munmap, PROT_READ } from '../sys/mman.js';
import { listenUnix } from '../sys/unix-socket.js';
import { type CloneCounters, newStatsBuffer, readStats } from './clone-stats.js';
import type { MappedMemory } from './fault-server.js';
import type { CloneWorkerData, CloneWorkerMessage, RegionSummary } from './worker-protocol.js';

export type CloneState = 'connecting' | 'serving' | 'ended' | 'failed';

// A type alias (not an interface) so it fits the registry's Record<string, unknown> clone entries.
export type CloneInfo = CloneCounters & {
  readonly id: number;
  readonly peer_pid: number | null;
  readonly state: CloneState;
  readonly connected_at: string;
  readonly ended_at: string | null;
  readonly error: string | null;
  readonly regions: readonly RegionSummary[];
};

export interface MemoryServerOptions {
  readonly socketPath: string;
  readonly memoryFile: string;
  /** How long a connected peer has to send its handshake (reference: 30 s). */
  readonly handshakeTimeoutMs?: number;
}

/** Ended clones kept for `snapshot ls` after they are gone. */
const ENDED_CLONES_KEPT = 64;
const STANDBY_RESTART_DELAY_MS = 1000;

interface CloneSlot {
  readonly id: number;
  readonly worker: Worker;
  readonly stats: SharedArrayBuffer;
  readonly exited: Promise<void>;
  accepted: boolean;
  peerPid: number | null;
  state: CloneState;
  connectedAt: string;
  endedAt: string | null;
  error: string | null;
  regions: readonly RegionSummary[];
}

export class MemoryServer {
  private readonly slots = new Map<number, CloneSlot>();
  private readonly ended: CloneSlot[] = [];
  private nextId = 1;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private standbyRestart: NodeJS.Timeout | undefined;

  private constructor(
    readonly socketPath: string,
    private readonly memory: MappedMemory,
    private readonly listenFd: number,
    private readonly stopFd: number,
    private readonly handshakeTimeoutMs: number,
  ) {}

  /** Maps the memory file, binds the socket, and resolves once a worker waits for the first clone. */
  static async start(options: MemoryServerOptions): Promise<MemoryServer> {
    const memory = mapMemoryFile(options.memoryFile);
    let listenFd = -1;
    let stopFd = -1;
    try {
      stopFd = createEventFd();
      listenFd = listenUnix(options.socketPath);
    } catch (err) {
      if (stopFd >= 0) closeFd(stopFd);
      if (memory.size > 0) munmap(memory.address, memory.size);
      throw err;
    }
    const server = new MemoryServer(options.socketPath, memory, listenFd, stopFd, options.handshakeTimeoutMs ?? 30_000);
    const standby = server.startStandby()!;
    try {
      await new Promise<void>((resolve, reject) => {
        standby.worker.on('message', (message: CloneWorkerMessage) => {
          if (message.type === 'waiting') resolve();
        });
        standby.worker.once('exit', () => reject(new Error(standby.error ?? 'the first worker thread exited early')));
      });
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** Clones connected now (being served or still sending their handshake). */
  liveClones(): number {
    let count = 0;
    for (const slot of this.slots.values())
      if (slot.accepted && (slot.state === 'connecting' || slot.state === 'serving')) count++;
    return count;
  }

  /** Every clone this server has seen (the most recent ended ones included), with its counters. */
  clones(): CloneInfo[] {
    // A slot that just ended is in both lists until its thread has exited.
    const all = new Set([...this.ended, ...[...this.slots.values()].filter((slot) => slot.accepted)]);
    return [...all].sort((a, b) => a.id - b.id).map(describe);
  }

  /** Stops every worker, then releases the socket, the mapping and the eventfd. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.standbyRestart);
    signalEventFd(this.stopFd);
    await Promise.all([...this.slots.values()].map((slot) => slot.exited));
    closeFd(this.listenFd);
    rmSync(this.socketPath, { force: true });
    closeFd(this.stopFd);
    if (this.memory.size > 0) munmap(this.memory.address, this.memory.size);
  }

  /** Starts the worker that takes the next connection. */
  private startStandby(): CloneSlot | undefined {
    if (this.stopping) return undefined;
    const id = this.nextId++;
    const stats = newStatsBuffer();
    const data: CloneWorkerData = {
      cloneId: id,
      listenFd: this.listenFd,
      stopFd: this.stopFd,
      memory: this.memory,
      stats,
      handshakeTimeoutMs: this.handshakeTimeoutMs,
    };
    const worker = startCloneWorker(data);
    const slot: CloneSlot = {
      id,
      worker,
      stats,
      exited: new Promise((resolve) => worker.once('exit', () => resolve())),
      accepted: false,
      peerPid: null,
      state: 'connecting',
      connectedAt: new Date().toISOString(),
      endedAt: null,
      error: null,
      regions: [],
    };
    this.slots.set(id, slot);
    worker.on('message', (message: CloneWorkerMessage) => this.onMessage(slot, message));
    worker.on('error', (err) => this.finish(slot, 'failed', `the clone's worker thread crashed: ${err.message}`));
    worker.on('exit', () => {
      this.slots.delete(id);
      if (slot.state === 'connecting' || slot.state === 'serving') {
        this.finish(slot, 'failed', "the clone's worker thread exited unexpectedly");
      }
      if (!slot.accepted && !this.stopping) {
        // The standby died before taking a connection: keep accepting, without spinning on a persistent fault.
        this.standbyRestart = setTimeout(() => this.startStandby(), STANDBY_RESTART_DELAY_MS);
      }
    });
    return slot;
  }

  private onMessage(slot: CloneSlot, message: CloneWorkerMessage): void {
    switch (message.type) {
      case 'waiting':
        break;
      case 'accepted':
        slot.accepted = true;
        slot.peerPid = message.peerPid;
        slot.connectedAt = new Date().toISOString();
        log.info(`clone ${slot.id} connected (pid ${message.peerPid ?? 'unknown'})`);
        this.startStandby();
        break;
      case 'serving':
        slot.state = 'serving';
        slot.regions = message.regions;
        log.debug(`clone ${slot.id}: ${message.regions.length} region(s)`, message.regions);
        this.checkCoverage(slot);
        break;
      case 'ended':
        if (message.reason === 'failed') this.finish(slot, 'failed', message.message ?? 'unknown failure');
        else this.finish(slot, 'ended', null);
        break;
    }
  }

  /** Firecracker's regions add up to the memory file exactly; anything else means a mismatched snapshot. */
  private checkCoverage(slot: CloneSlot): void {
    const end = Math.max(...slot.regions.map((region) => region.offset + region.size));
    if (end !== this.memory.size) {
      log.warn(
        `clone ${slot.id}: its memory regions end at byte ${end} of the snapshot, but the memory file holds ${this.memory.size} bytes; ${end > this.memory.size ? 'the rest reads as zeros' : 'the rest is never read'} (is it a clone of this snapshot?)`,
      );
    }
  }

  private finish(slot: CloneSlot, state: 'ended' | 'failed', error: string | null): void {
    if (slot.state === 'ended' || slot.state === 'failed') return;
    slot.state = state;
    slot.error = error;
    slot.endedAt = new Date().toISOString();
    if (!slot.accepted) {
      if (error) log.warn(`memory server: the standby worker failed: ${error}`);
      return;
    }
    if (error) log.warn(`clone ${slot.id} (pid ${slot.peerPid ?? 'unknown'}) failed: ${error}`);
    else log.info(`clone ${slot.id} (pid ${slot.peerPid ?? 'unknown'}) ended`);
    this.ended.push(slot);
    if (this.ended.length > ENDED_CLONES_KEPT) this.ended.shift();
  }
}

function describe(slot: CloneSlot): CloneInfo {
  return {
    id: slot.id,
    peer_pid: slot.peerPid,
    state: slot.state,
    connected_at: slot.connectedAt,
    ended_at: slot.endedAt,
    error: slot.error,
    regions: slot.regions,
    ...readStats(slot.stats),
  };
}

/** Maps the snapshot memory read-only and private: clones get copies, the file is never written. */
function mapMemoryFile(path: string): MappedMemory {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return { address: 0, size: 0 };
    return { address: mmap(size, PROT_READ, MAP_PRIVATE, fd, 0), size };
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts clone-worker in a thread. From the bundle (build/fcvm.mjs) the worker is its own bundle next
 * to it (build/uffd-worker.mjs, see scripts/build.mjs). From TypeScript sources (tests, tsx), Node 20
 * does not pass the --import tsx hooks to workers, so a tiny bootstrap registers tsx first.
 */
function startCloneWorker(data: CloneWorkerData): Worker {
  if (!import.meta.url.endsWith('.ts'))
    return new Worker(new URL('./uffd-worker.mjs', import.meta.url), { workerData: data });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./clone-worker.ts', import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: data });
}
