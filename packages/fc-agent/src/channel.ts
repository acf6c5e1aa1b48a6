/**
 * Transports that bring host sessions to the agent. Each yields one Duplex per host session and
 * waits for the next when it ends.
 *
 * virtio-serial (QEMU): the port (/dev/vportNpM, named fcvm.agent) is a character device, not a
 * socket, and one process at a time may open it. What the guest driver does, as seen in a real guest
 * (QEMU microvm, Debian cloud kernel 6.1) with the host connecting to QEMU's chardev socket:
 *   - no host connected: read() returns 0 at once; write() blocks until a host connects, and then
 *     delivers the stale bytes to that new host (the preamble exchange makes the host skip them);
 *   - host connected: read() blocks until data arrives; each read returns bytes of one buffer, which
 *     QEMU fills from one read of the host socket;
 *   - host disconnects: read() returns 0 once the buffered data is read. The disconnect travels on
 *     the control queue, the data on the data queue, so when a host reconnects at once the NEW host's
 *     first bytes (its preamble) can be read BEFORE that 0 - seen in the guest with a reconnect
 *     within a few ms.
 * Hence the rules of the reader loop, which owns the port for the agent's life:
 *   - a read that is exactly one preamble line starts a new session, superseding the current one;
 *   - a 0 read ends the current session only if that session got data after its preamble (else it
 *     is the late disconnect of the previous host); with no session the loop polls every POLL_MS;
 *   - other bytes go to the current session, or start one when there is none (the session drops
 *     anything before a preamble).
 *
 * Unix socket: for running the agent on a development host (tests); every connection is a session.
 * vsock (Firecracker): Node has no AF_VSOCK; not available in this version.
 */
import { open } from 'node:fs/promises';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { isWholePreamble } from '@fcvm/protocol';
import { describeError, logLine } from './log.js';

export type SessionHandler = (stream: Duplex) => Promise<void>;

const POLL_MS = 50;
const READ_SIZE = 64 * 1024;

/** The Duplex of one session on a virtio port. Reads are pushed by the port's loop. */
class PortSession extends Duplex {
  private readonly writeToPort: (chunk: Buffer) => Promise<void>;
  private demand: (() => void) | null = null;

  constructor(writeToPort: (chunk: Buffer) => Promise<void>) {
    super();
    this.writeToPort = writeToPort;
  }

  /** Delivers bytes from the host; resolves when the consumer wants more. */
  async deliver(chunk: Buffer): Promise<void> {
    if (this.destroyed) return;
    if (!this.push(chunk)) await new Promise<void>((resolve) => (this.demand = resolve));
  }

  override _read(): void {
    const wake = this.demand;
    this.demand = null;
    wake?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.destroyed) {
      callback();
      return;
    }
    this.writeToPort(chunk).then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this._read();
    callback(error);
  }
}

/** Byte-level access to a port: what the reader loop needs, so it can be tested without a device. */
export interface PortIo {
  /** Resolves with the number of bytes read into `buffer`; 0 as the driver's EOF. */
  read(buffer: Buffer): Promise<number>;
  writeAll(chunk: Buffer): Promise<void>;
  close(): Promise<void>;
}

export async function openPortDevice(path: string): Promise<PortIo> {
  const port = await open(path, 'r+');
  return {
    read: async (buffer) => (await port.read(buffer, 0, buffer.length, null)).bytesRead,
    async writeAll(chunk) {
      for (let offset = 0; offset < chunk.length; ) {
        const { bytesWritten } = await port.write(chunk, offset, chunk.length - offset, null);
        offset += bytesWritten;
      }
    },
    close: () => port.close(),
  };
}

export async function serveVirtioPort(path: string, handle: SessionHandler, signal: AbortSignal): Promise<void> {
  await servePort(await openPortDevice(path), handle, signal);
}

/** The reader loop (rules above). Closes `port` when `signal` aborts. */
export async function servePort(port: PortIo, handle: SessionHandler, signal: AbortSignal): Promise<void> {
  const writeAll = (chunk: Buffer): Promise<void> => port.writeAll(chunk);
  const buffer = Buffer.allocUnsafe(READ_SIZE);
  let session: PortSession | null = null;
  let sessionHasData = false;
  let sessionCount = 0;
  const endSession = (why: string): void => {
    if (session === null) return;
    logLine(`host session ${sessionCount} ${why}`);
    // Destroy, not only end: output still queued for the old host must not reach the next one.
    session.push(null);
    session.destroy();
    session = null;
  };
  try {
    while (!signal.aborted) {
      const bytesRead = await port.read(buffer);
      if (bytesRead === 0) {
        if (sessionHasData) endSession('ended');
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        continue;
      }
      const chunk = Buffer.from(buffer.subarray(0, bytesRead));
      const preamble = isWholePreamble(chunk);
      if (preamble) endSession('superseded by a new host');
      if (session === null) {
        sessionCount++;
        logLine(`host session ${sessionCount} started`);
        const current = new PortSession(writeAll);
        session = current;
        sessionHasData = !preamble;
        handle(current).catch((err: unknown) => logLine(`session failed: ${describeError(err)}`));
      } else {
        sessionHasData = true;
      }
      // A session the agent closed itself (e.g. a rejected hello) drops its host's bytes until EOF.
      await session.deliver(chunk);
    }
  } finally {
    session?.destroy();
    await port.close();
  }
}

/** Serves every connection to a Unix socket; resolves once listening, returns a closer. */
export async function serveUnixSocket(path: string, handle: SessionHandler): Promise<() => Promise<void>> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (err) => logLine(`host connection: ${describeError(err)}`));
    handle(socket).catch((err: unknown) => logLine(`session failed: ${describeError(err)}`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
}
