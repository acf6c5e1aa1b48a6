/**
 * Lets other fcvm processes (`fcvm exec`, `fcvm ls` health) reach a VM's agent while the process
 * that runs the VM holds the one channel (a virtio-serial port takes one host connection at a time).
 * The relay listens on a Unix socket (in the VM's directory, so its permissions guard it) and speaks
 * the same protocol as the agent: preamble, hello with the VM token, then every other request is
 * forwarded as an HTTP/2 stream on the upstream session, bodies and frames untouched. A client cannot
 * tell the relay from the agent, so AgentClient works against both.
 *
 * Host routes (paths under /host/) are answered by the owning fcvm process itself, never forwarded:
 * requests only the VM's owner can carry out because it holds the VMM (`fcvm snapshot create`).
 * They answer 200 with `{"ok": true, "result": ...}` or `{"ok": false, "code", "message"}`, so the
 * caller can rethrow the owner's FcvmError with its code (and exit status) intact.
 */
import { unlink } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import {
  encodePreamble,
  helloRejection,
  PreambleScanner,
  parseHelloRequest,
  Route,
  readJsonBody,
  readPreamble,
  refuseUnauthenticated,
  respondJson,
  respondWireError,
  watchLiveness,
} from '@fcvm/protocol';
import { errnoCode } from '../errors.js';
import { log } from '../log.js';
import type { AgentClient } from './agent-client.js';

const MAX_HELLO_BODY = 64 * 1024;

/** Host routes of the relay (see above). */
export const RelayHostRoute = {
  /** POST {name} -> {ok, result: {name, dir}}: snapshot this VM (vm/snapshot-create.ts). */
  Snapshot: '/host/v1/snapshot',
} as const;

export type HostRouteHandler = (body: unknown) => Promise<unknown>;

/** What a host route answers; `code` is an FcvmError code. */
export type HostRouteAnswer =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly code: string; readonly message: string };

export class AgentRelay {
  private readonly server: net.Server;
  private readonly http: http2.Http2Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly hostRoutes = new Map<string, HostRouteHandler>();
  readonly socketPath: string;

  private constructor(socketPath: string, server: net.Server, http: http2.Http2Server) {
    this.socketPath = socketPath;
    this.server = server;
    this.http = http;
  }

  static async listen(upstream: AgentClient, socketPath: string, token: string): Promise<AgentRelay> {
    const authenticated = new WeakSet<http2.Http2Session>();
    const http = http2.createServer();
    // A client that goes silent (its process stopped, its socket stalled) loses its session, which
    // cancels the requests it had forwarded (an exec's process is then killed by the agent).
    http.on('session', (session) => {
      watchLiveness(session, () => {
        log.debug('agent relay: a client went silent; closing its session');
        session.destroy();
      });
    });
    http.on('stream', (stream, headers) => {
      const session = stream.session;
      if (session === undefined) return;
      if (headers[':path'] === Route.Hello) {
        answerHello(stream, session, authenticated, upstream, token).catch((err: unknown) => {
          respondWireError(stream, { code: 'BAD_MESSAGE', message: (err as Error).message });
        });
      } else if (!authenticated.has(session)) {
        refuseUnauthenticated(stream, session);
      } else if (relay.hostRoutes.has(String(headers[':path']))) {
        const handler = relay.hostRoutes.get(String(headers[':path'])) as HostRouteHandler;
        answerHostRoute(stream, handler).catch((err: unknown) => {
          respondWireError(stream, { code: 'INTERNAL', message: (err as Error).message });
        });
      } else {
        forward(stream, headers, upstream);
      }
    });
    const server = net.createServer((socket) => {
      relay.sockets.add(socket);
      socket.on('close', () => relay.sockets.delete(socket));
      socket.on('error', (err) => log.debug(`agent relay client: ${err.message}`));
      readPreamble(socket, new PreambleScanner(null)).then(
        ({ preamble, rest }) => {
          socket.write(encodePreamble(preamble));
          if (rest.length > 0) socket.unshift(rest);
          http.emit('connection', socket);
        },
        (err: unknown) => {
          log.debug(`agent relay: no session started: ${(err as Error).message}`);
          socket.destroy();
        },
      );
    });
    const relay = new AgentRelay(socketPath, server, http);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    return relay;
  }

  /** Serves `path` (a RelayHostRoute) in this process from now on. */
  handleHostRoute(path: string, handler: HostRouteHandler): void {
    this.hostRoutes.set(path, handler);
  }

  /** Stops listening, ends relayed sessions and removes the socket file. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.http.close();
    try {
      await unlink(this.socketPath);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}

async function answerHostRoute(stream: http2.ServerHttp2Stream, handler: HostRouteHandler): Promise<void> {
  const body = await readJsonBody(stream, MAX_HELLO_BODY);
  let answer: HostRouteAnswer;
  try {
    answer = { ok: true, result: await handler(body) };
  } catch (err) {
    const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'INTERNAL';
    answer = { ok: false, code, message: err instanceof Error ? err.message : String(err) };
  }
  respondJson(stream, 200, answer);
}

async function answerHello(
  stream: http2.ServerHttp2Stream,
  session: http2.Http2Session,
  authenticated: WeakSet<http2.Http2Session>,
  upstream: AgentClient,
  token: string,
): Promise<void> {
  const hello = parseHelloRequest(await readJsonBody(stream, MAX_HELLO_BODY));
  const rejection = helloRejection(hello, token, "fcvm's relay");
  if (rejection !== null) {
    respondWireError(stream, rejection);
    session.close();
    return;
  }
  authenticated.add(session);
  // Relayed sessions never trigger a restore: only the VM's own process knows about restores.
  const status = await upstream.status();
  respondJson(stream, 200, { ...upstream.hello, restored: false, phase: status.phase });
}

function forward(incoming: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, upstream: AgentClient): void {
  let outgoing: http2.ClientHttp2Stream;
  try {
    outgoing = upstream.openRawStream({
      ':method': headers[':method'],
      ':path': headers[':path'],
      ...(headers['content-type'] === undefined ? {} : { 'content-type': headers['content-type'] }),
    });
  } catch (err) {
    respondWireError(incoming, { code: 'INTERNAL', message: `the VM's channel is closed: ${(err as Error).message}` });
    return;
  }
  outgoing.on('response', (responseHeaders) => {
    if (incoming.destroyed || incoming.headersSent) return;
    const reply: http2.OutgoingHttpHeaders = { ':status': responseHeaders[':status'] };
    if (responseHeaders['content-type'] !== undefined) reply['content-type'] = responseHeaders['content-type'];
    incoming.respond(reply);
    outgoing.pipe(incoming);
  });
  incoming.pipe(outgoing);
  outgoing.on('error', (err) => {
    log.debug(`agent relay upstream stream: ${err.message}`);
    if (!incoming.headersSent)
      respondWireError(incoming, { code: 'INTERNAL', message: `the VM's channel broke: ${err.message}` });
    else incoming.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  outgoing.on('close', () => {
    if (!incoming.destroyed && !incoming.writableEnded) incoming.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  incoming.on('error', (err) => log.debug(`agent relay client stream: ${err.message}`));
  incoming.on('close', () => {
    if (!outgoing.destroyed) outgoing.close(http2.constants.NGHTTP2_CANCEL);
  });
}
