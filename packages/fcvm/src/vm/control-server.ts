/**
 * The control socket of a running VM (`<vm dir>/control.sock`, 0600 in a 0700 directory). The fcvm
 * process that owns a VM holds its only agent session; other fcvm processes (`fcvm exec`) reach the
 * agent through this socket. It is an HTTP/2 server that relays exec streams to the agent session
 * untouched: the frames are end to end between `fcvm exec` and the agent.
 */
import { chmodSync } from 'node:fs';
import http2 from 'node:http2';
import { FRAMES_CONTENT_TYPE, Route } from '@fcvm/protocol';
import type { AgentClient } from '../agent/agent-client.js';
import { log } from '../log.js';

export const CONTROL_SOCKET_NAME = 'control.sock';

const RELAYED_ROUTES = new Set<string>([Route.Exec]);

export interface ControlServer {
  close(): Promise<void>;
}

export async function startControlServer(socketPath: string, agent: AgentClient): Promise<ControlServer> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) => log.debug(`control socket session: ${err.message}`));
  });
  server.on('stream', (stream, headers) => {
    const path = headers[':path'] ?? '';
    if (!RELAYED_ROUTES.has(path)) {
      stream.respond({ ':status': 404 });
      stream.end();
      return;
    }
    const upstream = agent.openRelayStream(path);
    upstream.on('response', (responseHeaders) => {
      if (stream.destroyed) return;
      stream.respond({
        ':status': responseHeaders[':status'] ?? 502,
        'content-type': responseHeaders['content-type'] ?? FRAMES_CONTENT_TYPE,
      });
      upstream.pipe(stream);
    });
    stream.pipe(upstream);
    const abort = (): void => {
      if (!upstream.destroyed) upstream.close(http2.constants.NGHTTP2_CANCEL);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    stream.on('close', abort);
    upstream.on('close', () => {
      if (!stream.destroyed && !stream.headersSent) {
        stream.respond({ ':status': 502 });
        stream.end();
      }
    });
    stream.on('error', abort);
    upstream.on('error', abort);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}
