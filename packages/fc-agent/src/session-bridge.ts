/**
 * Connects one host session to the agent's HTTP/2 server through a real Unix socket pair.
 *
 * Why not hand the session's Duplex to HTTP/2 directly: Node wraps a non-socket Duplex in an
 * internal JSStreamSocket that allows one write in flight, and Node 18 (the guest's) asserts and
 * kills the process when HTTP/2 writes again while one is pending. On virtio-serial a write stays
 * pending forever once the host has gone, so superseding such a session crashed the agent (seen in a
 * guest). Here HTTP/2 writes into a kernel socket, and the relay below carries the bytes to the
 * session with back-pressure, on its own time.
 *
 * The relay also keeps the channel's rule (channel-start.ts): nothing goes to the host after the
 * preamble echo until the host has sent a byte.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError, logLine } from './log.js';

/** Returns the socket the HTTP/2 server should use; the relay ends with either side. */
export async function bridgeSession(session: Duplex, rest: Buffer): Promise<net.Socket> {
  // Abstract socket name: no file to clean up, unique per session.
  const address = `\0fcvm-agent-${process.pid}-${randomBytes(8).toString('hex')}`;
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address, () => resolve());
  });
  const near = net.connect(address);
  const far = await accepted;
  server.close();
  relay(session, near, rest);
  return far;
}

function relay(session: Duplex, near: net.Socket, rest: Buffer): void {
  let hostSpoke = rest.length > 0;
  const heldForHost: Buffer[] = [];
  const toHost = (chunk: Buffer): void => {
    if (!session.write(chunk)) {
      near.pause();
      session.once('drain', () => near.resume());
    }
  };
  if (rest.length > 0) near.write(rest);

  session.on('data', (chunk: Buffer) => {
    if (!hostSpoke) {
      hostSpoke = true;
      for (const held of heldForHost.splice(0)) toHost(held);
    }
    if (!near.write(chunk)) {
      session.pause();
      near.once('drain', () => session.resume());
    }
  });
  session.once('end', () => near.end());
  session.once('close', () => near.destroy());
  session.on('error', (err) => logLine(`host stream: ${describeError(err)}`));
  session.resume();

  near.on('data', (chunk: Buffer) => {
    if (hostSpoke) toHost(chunk);
    else heldForHost.push(chunk);
  });
  near.once('end', () => session.end());
  near.once('close', () => session.destroy());
  near.on('error', (err) => logLine(`session bridge: ${describeError(err)}`));
}
