/**
 * Worker-thread entry for one clone (see worker-protocol.ts). koffi calls are synchronous, so each
 * clone gets a thread that can block in poll(2) without stalling the others or the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { closeFd, PollSet } from '../sys/fd.js';
import { acceptUnix, MessageReceiver, peerCredentials } from '../sys/unix-socket.js';
import { isSameProcessAlive, processStartTime } from '../util/proc.js';
import { CloneStatsWriter } from './clone-stats.js';
import { type ServeEnd, serveFaults } from './fault-server.js';
import { type GuestRegion, HandshakeError, JsonArrayFramer, parseRegions } from './handshake.js';
import type { CloneWorkerData, CloneWorkerMessage } from './worker-protocol.js';

const data = workerData as CloneWorkerData;

function post(message: CloneWorkerMessage): void {
  parentPort?.postMessage(message);
}

/** Waits for a connection; undefined when the server stops first. */
function acceptOne(): number | undefined {
  const polls = new PollSet([data.listenFd, data.stopFd]);
  post({ type: 'waiting' });
  for (;;) {
    polls.wait(-1);
    if (polls.revents(1) !== 0) return undefined;
    const fd = acceptUnix(data.listenFd);
    if (fd !== undefined) return fd;
  }
}

interface Handshake {
  readonly uffd: number;
  readonly regions: GuestRegion[];
}

/** Receives the regions and the userfaultfd; pushes every received descriptor to `owned` at once so none leaks. */
function receiveHandshake(connection: number, owned: number[]): Handshake | 'stopped' {
  const receiver = new MessageReceiver();
  const framer = new JsonArrayFramer();
  const polls = new PollSet([connection, data.stopFd]);
  const deadline = Date.now() + data.handshakeTimeoutMs;
  let uffd: number | undefined;
  while (!framer.complete) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new HandshakeError(`no complete handshake within ${data.handshakeTimeoutMs} ms`);
    polls.wait(remaining);
    if (polls.revents(1) !== 0) return 'stopped';
    if (polls.revents(0) === 0) continue;
    const message = receiver.receive(connection);
    if (!message) continue;
    owned.push(...message.fds);
    if (message.truncated) throw new HandshakeError('the handshake carried more descriptors than expected');
    if (message.fds.length > 1)
      throw new HandshakeError(`the handshake carried ${message.fds.length} descriptors, not one`);
    if (message.fds.length === 1) {
      if (uffd !== undefined) throw new HandshakeError('the handshake carried a second userfaultfd');
      uffd = message.fds[0];
    }
    if (message.length === 0)
      throw new HandshakeError('the peer closed the connection before the handshake was complete');
    framer.push(receiver.data.subarray(0, message.length));
  }
  if (uffd === undefined) throw new HandshakeError('the handshake carried no userfaultfd (SCM_RIGHTS)');
  return { uffd, regions: parseRegions(framer.text()) };
}

function run(): void {
  const connection = acceptOne();
  if (connection === undefined) {
    post({ type: 'ended', reason: 'stopped' });
    return;
  }
  const owned: number[] = [connection];
  try {
    const peer = identifyPeer(connection);
    post({ type: 'accepted', peerPid: peer.pid });
    const end = handshakeAndServe(connection, owned, peer);
    if (end.reason === 'failed') {
      new CloneStatsWriter(data.stats).add('errors');
      // A clone we cannot serve hangs on its next missing page forever: end it so its owner sees a
      // failure (as Firecracker's example handlers do). Only if it handed us its userfaultfd (it
      // depends on us then), and while the connection is still open, so the PID cannot be reused yet.
      const receivedUffd = owned.length > 1;
      const killNote = receivedUffd ? endPeer(peer) : '';
      post({ type: 'ended', reason: 'failed', message: `${end.message}${killNote}` });
    } else {
      post({ type: 'ended', reason: end.reason });
    }
  } finally {
    for (const fd of owned) closeFd(fd);
  }
}

interface Peer {
  readonly pid: number | null;
  readonly startTime: number | undefined;
}

function identifyPeer(connection: number): Peer {
  const pid = peerCredentials(connection).pid || null;
  return { pid, startTime: pid === null ? undefined : processStartTime(pid) };
}

function isAlive(peer: Peer): boolean {
  return peer.pid !== null && isSameProcessAlive(peer.pid, peer.startTime);
}

function handshakeAndServe(connection: number, owned: number[], peer: Peer): ServeEnd {
  try {
    const handshake = receiveHandshake(connection, owned);
    if (handshake === 'stopped') return { reason: 'stopped' };
    post({
      type: 'serving',
      regions: handshake.regions.map((r) => ({ base: r.base, size: r.size, offset: r.offset, page_size: r.pageSize })),
    });
    return serveFaults({
      uffd: handshake.uffd,
      connection,
      stopFd: data.stopFd,
      regions: handshake.regions,
      memory: data.memory,
      stats: new CloneStatsWriter(data.stats),
      isPeerAlive: () => isAlive(peer),
    });
  } catch (err) {
    return { reason: 'failed', message: err instanceof Error ? err.message : String(err) };
  }
}

/** SIGKILLs the peer; returns a note for the failure message. */
function endPeer(peer: Peer): string {
  if (peer.pid === null || !isAlive(peer)) return '';
  try {
    process.kill(peer.pid, 'SIGKILL');
    return `; killed the clone process ${peer.pid}, which could not be served`;
  } catch (err) {
    return `; could not kill the clone process ${peer.pid}: ${(err as Error).message}`;
  }
}

run();
