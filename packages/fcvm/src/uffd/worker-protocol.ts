/**
 * What the main thread and a clone worker tell each other. One worker per clone: it waits on the
 * listening socket as the "standby", accepts one connection, reports that (so the main thread starts
 * the next standby), receives the handshake, serves the clone's faults, and reports how it ended.
 */
import type { MappedMemory } from './fault-server.js';

export interface CloneWorkerData {
  readonly cloneId: number;
  readonly listenFd: number;
  readonly stopFd: number;
  readonly memory: MappedMemory;
  readonly stats: SharedArrayBuffer;
  readonly handshakeTimeoutMs: number;
}

export interface RegionSummary {
  readonly base: number;
  readonly size: number;
  readonly offset: number;
  readonly page_size: number;
}

export type CloneWorkerMessage =
  | { readonly type: 'waiting' }
  | { readonly type: 'accepted'; readonly peerPid: number | null }
  | { readonly type: 'serving'; readonly regions: readonly RegionSummary[] }
  | { readonly type: 'ended'; readonly reason: 'stopped' | 'peer-gone' | 'failed'; readonly message?: string };
