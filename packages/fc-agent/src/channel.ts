/**
 * Transports that bring host sessions to the agent. Each yields one Duplex per host session and
 * waits for the next when it ends.
 *
 * virtio-serial (QEMU): /dev/virtio-ports/fcvm.agent is a character device, not a socket, and can be
 * opened by one process at a time. What the guest driver does (virtio_console.c, checked in a guest):
 *   - no host connected: read() returns 0 at once (EOF) and write() blocks until a host connects;
 *   - host connected: read() blocks until data arrives;
 *   - host disconnects: a blocked read() wakes up and returns 0 once the buffered data is read.
 * So one reader loop owns the port for the agent's whole life: the first bytes after an EOF start a
 * session, the next EOF ends it; while no host is there the loop polls every POLL_MS. Bytes that
 * arrive for a session the agent has already closed (e.g. a rejected hello) are dropped until the
 * host goes away, so they can never leak into the next session.
 *
 * Unix socket: for running the agent on a development host (tests); every connection is a session.
 * vsock (Firecracker): Node has no AF_VSOCK; not available in this version.
 */
import { open } from 'node:fs/promises';
import net from 'node:net';
import { Duplex } from 'node:stream';
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
    this.writeToPort(chunk).then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this._read();
    callback(error);
  }
}

export async function serveVirtioPort(path: string, handle: SessionHandler, signal: AbortSignal): Promise<void> {
  const port = await open(path, 'r+');
  const writeAll = async (chunk: Buffer): Promise<void> => {
    for (let offset = 0; offset < chunk.length; ) {
      const { bytesWritten } = await port.write(chunk, offset, chunk.length - offset, null);
      offset += bytesWritten;
    }
  };
  const buffer = Buffer.allocUnsafe(READ_SIZE);
  let session: PortSession | null = null;
  let sessionCount = 0;
  try {
    while (!signal.aborted) {
      const { bytesRead } = await port.read(buffer, 0, READ_SIZE, null);
      if (bytesRead === 0) {
        if (session !== null) {
          logLine(`host session ${sessionCount} ended`);
          session.push(null);
          session = null;
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        continue;
      }
      const chunk = Buffer.from(buffer.subarray(0, bytesRead));
      if (session === null) {
        sessionCount++;
        logLine(`host session ${sessionCount} started`);
        const current = new PortSession(writeAll);
        session = current;
        handle(current).catch((err: unknown) => logLine(`session failed: ${describeError(err)}`));
      }
      // A session the agent closed keeps its host until EOF: its bytes are dropped.
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
