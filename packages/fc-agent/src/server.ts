/**
 * The agent's side of a host session: HTTP/2 server over one byte stream, the hello handshake
 * (token + protocol version), the restore check, and the routes. One AgentServer lives as long as
 * the agent; serveSession() is called once per host connection.
 */
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import {
  encodePreamble,
  type HelloRequest,
  type HelloResponse,
  helloRejection,
  MessageValidationError,
  PROTOCOL_VERSION,
  PreambleScanner,
  parseBootPlan,
  parseHelloRequest,
  Route,
  readJsonBody,
  readPreamble,
  refuseUnauthenticated,
  respondJson,
  respondWireError,
  watchLiveness,
} from '@fcvm/protocol';
import { ExecRejected, launchInVm, serveExec } from './exec-server.js';
import { FrameStream } from './frame-stream.js';
import { describeError, logLine } from './log.js';
import { PlanConflict, type PlanRunner } from './plan.js';
import { bridgeSession } from './session-bridge.js';

export interface AgentServerOptions {
  readonly token: string;
  readonly agentVersion: string;
  readonly plan: PlanRunner;
  /** Runs when a hello carries a restore epoch the agent has not seen (restore.ts in the guest). */
  readonly onRestore: (hello: HelloRequest) => Promise<void>;
  /** Spec of the first epoch this agent serves; 0 at cold boot. */
  readonly initialRestoreEpoch?: number;
}

const MAX_JSON_BODY = 1024 * 1024;

export class AgentServer {
  private readonly options: AgentServerOptions;
  private readonly bootId = randomBytes(8).toString('hex');
  private restoreEpoch: number;
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(options: AgentServerOptions) {
    this.options = options;
    this.restoreEpoch = options.initialRestoreEpoch ?? 0;
  }

  /** Serves one host session on `stream`; resolves when it has ended, however it ended. */
  async serveSession(stream: Duplex): Promise<void> {
    let channel: Duplex;
    try {
      const { preamble, rest } = await readPreamble(stream, new PreambleScanner(null));
      stream.write(encodePreamble(preamble));
      channel = await bridgeSession(stream, rest);
    } catch (err) {
      logLine(`no session started: ${describeError(err)}`);
      stream.destroy();
      return;
    }
    await this.serveHttp2(channel);
  }

  private serveHttp2(stream: Duplex): Promise<void> {
    const server = http2.createServer();
    const authenticated = new WeakSet<http2.Http2Session>();
    return new Promise((resolve) => {
      server.on('session', (session) => {
        this.sessions.add(session);
        session.on('error', (err) => logLine(`session error: ${describeError(err)}`));
        // A host that answers no ping is gone: end its session so the container's output waits for
        // the next attach (bounded, plan.ts) instead of for a host that will never read it.
        watchLiveness(session, (silentMs) => {
          logLine(`the host answered nothing for ${Math.round(silentMs / 1000)} s: ending its session`);
          session.destroy();
        });
        session.on('close', () => {
          this.sessions.delete(session);
          resolve();
        });
      });
      server.on('stream', (httpStream, headers) => {
        const session = httpStream.session;
        if (session === undefined) return;
        this.route(httpStream, headers, session, authenticated).catch((err: unknown) => {
          const code = err instanceof MessageValidationError ? 'BAD_MESSAGE' : 'INTERNAL';
          logLine(`request ${String(headers[':path'])} failed: ${describeError(err)}`);
          respondWireError(httpStream, { code, message: describeError(err) });
        });
      });
      // A stream that ends before HTTP/2 even starts still counts as a finished session.
      stream.once('close', () => resolve());
      server.emit('connection', stream);
    });
  }

  /** Ends every open session (agent shutdown). */
  closeSessions(): void {
    for (const session of this.sessions) session.destroy();
  }

  private async route(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    session: http2.Http2Session,
    authenticated: WeakSet<http2.Http2Session>,
  ): Promise<void> {
    const path = headers[':path'];
    const method = headers[':method'];
    if (path === Route.Hello && method === 'POST') {
      await this.hello(stream, session, authenticated);
      return;
    }
    if (!authenticated.has(session)) {
      refuseUnauthenticated(stream, session);
      return;
    }
    const plan = this.options.plan;
    if (path === Route.Status && method === 'GET') {
      respondJson(stream, 200, await plan.status(this.restoreEpoch));
    } else if (path === Route.Plan && method === 'POST') {
      const body = await readJsonBody(stream, MAX_JSON_BODY);
      try {
        plan.accept(parseBootPlan(body));
      } catch (err) {
        if (err instanceof PlanConflict) return respondWireError(stream, { code: 'CONFLICT', message: err.message });
        throw err;
      }
      respondJson(stream, 202, {});
    } else if (path === Route.Attach && method === 'POST') {
      await plan.attach(new FrameStream(stream));
    } else if (path === Route.Exec && method === 'POST') {
      await serveExec(new FrameStream(stream), (spec) => {
        if (spec.inVm) return launchInVm(spec);
        if (!plan.isRunning) throw new ExecRejected('CONFLICT', 'the container is not running');
        return plan.execLaunch(spec);
      });
    } else if (path === Route.Poweroff && method === 'POST') {
      await readJsonBody(stream, MAX_JSON_BODY);
      // Only once the answer is out: the poweroff tears the session down.
      stream.once('close', () => plan.requestPoweroff());
      respondJson(stream, 202, {});
    } else {
      respondWireError(stream, { code: 'NOT_FOUND', message: `no route ${String(method)} ${String(path)}` });
    }
  }

  private async hello(
    stream: http2.ServerHttp2Stream,
    session: http2.Http2Session,
    authenticated: WeakSet<http2.Http2Session>,
  ): Promise<void> {
    const receivedAt = performance.now();
    const hello = parseHelloRequest(await readJsonBody(stream, MAX_JSON_BODY));
    const rejection = helloRejection(hello, this.options.token, 'fc-agent');
    if (rejection !== null) {
      logLine(`rejected a session: ${rejection.message}`);
      respondWireError(stream, rejection);
      session.close();
      return;
    }
    const restored = hello.restoreEpoch !== this.restoreEpoch;
    if (restored) {
      logLine(`restore epoch ${this.restoreEpoch} -> ${hello.restoreEpoch}: running the restore sequence`);
      await this.options.onRestore({
        ...hello,
        hostTimeMs: hello.hostTimeMs + Math.round(performance.now() - receivedAt),
      });
      this.restoreEpoch = hello.restoreEpoch;
    }
    authenticated.add(session);
    const response: HelloResponse = {
      protocolVersion: PROTOCOL_VERSION,
      agentVersion: this.options.agentVersion,
      bootId: this.bootId,
      restored,
      phase: (await this.options.plan.status(this.restoreEpoch)).phase,
    };
    respondJson(stream, 200, response);
  }
}
