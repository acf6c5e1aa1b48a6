/**
 * A published port that is already taken is one clear error before the VM boots: each host
 * address/port is bound once for a moment (and released) before pasta or a DNAT rule claims it.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { FcvmError } from '../errors.js';
import type { PublishedPort } from './types.js';

function tryBind(port: PublishedPort & { hostIp: string }): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    if (port.protocol === 'tcp') {
      const server = createServer();
      server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
      server.listen({ host: port.hostIp, port: port.hostPort, exclusive: true }, () =>
        server.close(() => resolve(null)),
      );
    } else {
      const socket = createSocket(port.hostIp.includes(':') ? 'udp6' : 'udp4');
      socket.once('error', (err: NodeJS.ErrnoException) => {
        socket.close();
        resolve(err);
      });
      socket.bind({ address: port.hostIp, port: port.hostPort, exclusive: true }, () =>
        socket.close(() => resolve(null)),
      );
    }
  });
}

export async function assertPortsFree(ports: readonly (PublishedPort & { hostIp: string })[]): Promise<void> {
  for (const port of ports) {
    const err = await tryBind(port);
    if (err === null) continue;
    const where = `${port.hostIp}:${port.hostPort}/${port.protocol}`;
    if (err.code === 'EADDRINUSE') {
      throw new FcvmError('PORT_IN_USE', `Port ${where} is already in use; choose another host port in --publish.`);
    }
    if (err.code === 'EADDRNOTAVAIL') {
      throw new FcvmError('USAGE', `Cannot publish on ${where}: the host has no address ${port.hostIp}.`);
    }
    throw new FcvmError('NETWORK', `Cannot publish on ${where}: ${err.message}.`);
  }
}
