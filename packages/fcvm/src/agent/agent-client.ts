/**
 * The host's client of fc-agent. It speaks the @fcvm/protocol contract over any byte stream (the
 * socket VmHandle.openChannel() returns, or a Unix socket in tests) and knows nothing of VMMs.
 *
 *   const client = await AgentClient.connect(await vm.openChannel(), { token });   // hello
 *   await client.sendPlan(plan);                    // cold boot only (hello.phase === 'waiting-plan')
 *   const exit = await client.attach(io);           // container output -> io, resolves with its exit
 *   await client.poweroff(); client.close();
 */
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import {
  AGENT_AUTHORITY,
  type AgentStatus,
  type AttachSpec,
  type BootPlan,
  type ExecSpec,
  type ExitReport,
  FRAMES_CONTENT_TYPE,
  type HelloRequest,
  type HelloResponse,
  JSON_CONTENT_TYPE,
  type LivenessOptions,
  PING_SILENT_MS,
  PROTOCOL_VERSION,
  parseAgentStatus,
  parseHelloResponse,
  type RestoreIdentity,
  Route,
  startHostChannel,
  watchLiveness,
} from '@fcvm/protocol';
import { exitStatusOf, FcvmError, type FcvmErrorCode } from '../errors.js';
import { log } from '../log.js';
import { poll } from '../util/poll.js';
import { agentErrorFromBody, wireCodeOf } from './agent-error.js';
import { runFrameSession } from './frame-session.js';
import type { SessionIo } from './session-io.js';

export interface ConnectOptions {
  /** The VM's token, as injected into the guest at /run/fcvm/token. */
  readonly token: string;
  /** 0 at cold boot; the host increases it with every restore of the VM. */
  readonly restoreEpoch?: number;
  /** Entropy and identity for a restored VM's first hello (a clone). */
  readonly restore?: RestoreIdentity;
  /** Defaults to PROTOCOL_VERSION; other values exist for tests of the mismatch path. */
  readonly protocolVersion?: number;
  /** Bounds the preamble and the hello each (default 30 s; a restore sequence runs inside the hello). */
  readonly timeoutMs?: number;
  /** Who answers on this channel, for error messages (default "fc-agent in the guest"). */
  readonly peer?: string;
  /** Where to look when the channel fails (e.g. "see the console log at PATH"), added to channel errors. */
  readonly diagnostics?: string;
  /**
   * Opens a fresh stream to the same peer. With it, a container attach whose channel breaks or goes
   * silent reconnects and attaches again (the agent keeps a container's exit for the next attach).
   */
  readonly reopen?: () => Promise<Duplex>;
  /** Liveness bounds; tests shorten them. */
  readonly liveness?: LivenessOptions;
  /** Bounds a reconnect's preamble and hello (default RECONNECT_TIMEOUT_MS); tests shorten it. */
  readonly reconnectTimeoutMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/**
 * How long a reconnect waits for the agent to take the new session. Generous: a guest under software
 * emulation has been seen stalled for ~50 s (kernel soft lockups on a loaded 2-core host) and then
 * carrying on; the VM's own death ends the wait earlier (the caller races it).
 */
const RECONNECT_TIMEOUT_MS = 120_000;
/** Reconnects one attach makes after its channel broke or went silent, before it gives up. */
const MAX_REATTACH = 3;

type Liveness = ReturnType<typeof watchLiveness>;

export class AgentClient {
  private currentHello: HelloResponse;
  private session: http2.ClientHttp2Session;
  private readonly options: ConnectOptions;
  /** Set when the liveness watch gave up on the current session: why, in one sentence. */
  private silence: string | null = null;
  private liveness: Liveness;
  /** Set by close()/destroy(): a session ended on purpose is not reconnected. */
  private ended = false;

  private constructor(session: http2.ClientHttp2Session, hello: HelloResponse, options: ConnectOptions) {
    this.session = session;
    this.currentHello = hello;
    this.options = options;
    this.liveness = this.watch(session);
  }

  /** Opens an HTTP/2 session on `stream` and authenticates. The stream belongs to the client afterwards. */
  static async connect(stream: Duplex, options: ConnectOptions): Promise<AgentClient> {
    const { session, hello } = await openSession(stream, options);
    return new AgentClient(session, hello, options);
  }

  get hello(): HelloResponse {
    return this.currentHello;
  }

  async status(): Promise<AgentStatus> {
    return parseAgentStatus(await requestJson(this.session, 'GET', Route.Status, null));
  }

  async sendPlan(plan: BootPlan): Promise<void> {
    await requestJson(this.session, 'POST', Route.Plan, plan);
  }

  /**
   * Attaches to the container's run session: the container starts (if it has not yet), its output
   * goes to `io` untouched, and the promise settles with its exit report. A newer attach (from a
   * later session) ends this one with an AGENT error. When the channel breaks or goes silent and
   * the client can reopen it, it reconnects and attaches again (output in flight is lost; the exit
   * is not).
   */
  async attach(io: SessionIo): Promise<ExitReport> {
    for (let reattach = 0; ; reattach++) {
      const spec: AttachSpec = { terminal: io.terminal?.size() ?? null };
      try {
        return await runFrameSession(this.openFrameStream(Route.Attach), spec, io);
      } catch (err) {
        const failure = this.explain(err);
        const canReattach = !this.ended && this.options.reopen !== undefined && reattach < MAX_REATTACH;
        if (!isChannelFailure(failure) || !canReattach) throw failure;
        log.warn(`${(failure as Error).message} Reconnecting to collect the container's exit.`);
        try {
          await this.reconnect();
        } catch (reconnectError) {
          throw new FcvmError(
            'AGENT',
            `${this.peerName} did not take a new session after its channel failed${this.diagnosticsSuffix}`,
            { cause: reconnectError, context: { channel: 'broken', first: (failure as Error).message } },
          );
        }
      }
    }
  }

  /** Runs one command in the container or the VM; settles with its exit report. */
  async exec(spec: Omit<ExecSpec, 'terminal'>, io: SessionIo): Promise<ExitReport> {
    const full: ExecSpec = { ...spec, terminal: io.terminal?.size() ?? null };
    try {
      return await runFrameSession(this.openFrameStream(Route.Exec), full, io);
    } catch (err) {
      throw this.explain(err);
    }
  }

  /**
   * A host route of the relay (agent-relay.ts): answered by the VM's owning fcvm process. Rethrows
   * the owner's error with its code.
   */
  async hostRequest(path: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const answer = (await requestJson(this.session, 'POST', path, body, timeoutMs)) as {
      ok?: boolean;
      result?: unknown;
      code?: string;
      message?: string;
    };
    if (answer.ok === true) return answer.result;
    const code = answer.code as FcvmErrorCode;
    throw new FcvmError(
      exitStatusOf(code) === undefined ? 'INTERNAL' : code,
      answer.message ?? `The VM's fcvm process could not answer ${path}.`,
    );
  }

  /** Tells the agent the host is done: it removes the container and powers the VM off. */
  async poweroff(): Promise<void> {
    try {
      await requestJson(this.session, 'POST', Route.Poweroff, {});
    } catch (err) {
      // The agent may take the channel down with the VM before its answer arrives: that is success.
      if (wireCodeOf(err) !== undefined) throw err;
      log.debug(`agent channel closed during poweroff: ${(err as Error).message}`);
    }
  }

  /**
   * Pauses the liveness watch while the VM is paused on purpose (a snapshot); call the returned
   * function to resume it.
   */
  suspendLiveness(): () => void {
    return this.liveness.suspend();
  }

  /** Ends the session after in-flight requests finish. */
  close(): Promise<void> {
    this.ended = true;
    this.liveness.stop();
    return new Promise((resolve) => {
      if (this.session.closed || this.session.destroyed) return resolve();
      this.session.close(() => resolve());
    });
  }

  /** Ends the session now. */
  destroy(): void {
    this.ended = true;
    this.liveness.stop();
    this.session.destroy();
  }

  /** A stream on the agent session with the given request headers (for the relay, agent-relay.ts). */
  openRawStream(headers: http2.OutgoingHttpHeaders): http2.ClientHttp2Stream {
    return this.session.request(headers);
  }

  private openFrameStream(path: string): http2.ClientHttp2Stream {
    try {
      return this.session.request({ ':method': 'POST', ':path': path, 'content-type': FRAMES_CONTENT_TYPE });
    } catch (err) {
      throw new FcvmError('AGENT', `The channel to ${this.peerName} is closed (${path}).`, {
        cause: err,
        context: { channel: 'broken' },
      });
    }
  }

  private watch(session: http2.ClientHttp2Session): Liveness {
    const silentMs = this.options.liveness?.silentMs ?? PING_SILENT_MS;
    return watchLiveness(
      session,
      (silentFor) => {
        this.silence = `${this.peerName} answered nothing on its channel for ${Math.round(silentFor / 1000)} s (the bound is ${silentMs / 1000} s): that side went silent${this.diagnosticsSuffix}`;
        log.debug(this.silence);
        session.destroy();
      },
      this.options.liveness,
    );
  }

  private get peerName(): string {
    return this.options.peer ?? 'fc-agent in the guest';
  }

  private get diagnosticsSuffix(): string {
    return this.options.diagnostics === undefined ? '.' : `; ${this.options.diagnostics}.`;
  }

  /** Replaces a broken or silent session with a new one to the same peer (same token and epoch). */
  private async reconnect(): Promise<void> {
    const reopen = this.options.reopen;
    if (reopen === undefined) throw new Error('no way to reopen the channel');
    this.liveness.stop();
    this.session.destroy();
    const timeoutMs = this.options.reconnectTimeoutMs ?? RECONNECT_TIMEOUT_MS;
    const { session, hello } = await openSession(await reopen(), { ...this.options, timeoutMs });
    this.session = session;
    this.currentHello = hello;
    this.silence = null;
    this.liveness = this.watch(session);
  }

  /** A session failure, in the words of the liveness watch when it was the cause. */
  private explain(err: unknown): unknown {
    if (this.silence === null) return err;
    return new FcvmError('AGENT', this.silence, { cause: err, context: { channel: 'silent' } });
  }
}

/** A failure of the channel (broken, closed, silent) rather than an answer of the agent. */
function isChannelFailure(err: unknown): boolean {
  const context = (err as { context?: Record<string, unknown> } | null)?.context;
  return context?.channel === 'broken' || context?.channel === 'silent';
}

/** Preamble, HTTP/2 session and hello on `stream`; the stream belongs to the session afterwards. */
async function openSession(
  stream: Duplex,
  options: ConnectOptions,
): Promise<{ session: http2.ClientHttp2Session; hello: HelloResponse }> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const protocolVersion = options.protocolVersion ?? PROTOCOL_VERSION;
  try {
    await startHostChannel(stream, protocolVersion, AbortSignal.timeout(timeoutMs));
  } catch (err) {
    stream.destroy();
    throw new FcvmError('AGENT', `fc-agent did not start a session within ${timeoutMs / 1000} s.`, {
      cause: err,
    });
  }
  const session = http2.connect(AGENT_AUTHORITY, { createConnection: () => stream });
  // Session errors also fail the requests in flight, which report them; here they are only logged.
  session.on('error', (err) => log.debug(`agent channel: ${err.message}`));
  const request: HelloRequest = {
    protocolVersion,
    token: options.token,
    hostTimeMs: Date.now(),
    restoreEpoch: options.restoreEpoch ?? 0,
    ...(options.restore === undefined ? {} : { restore: options.restore }),
  };
  try {
    const body = await requestJson(session, 'POST', Route.Hello, request, timeoutMs);
    const hello = parseHelloResponse(body);
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      throw new FcvmError(
        'AGENT',
        `The guest agent speaks protocol version ${hello.protocolVersion}, this fcvm speaks ${PROTOCOL_VERSION}: recreate the VM or snapshot with this fcvm.`,
      );
    }
    return { session, hello };
  } catch (err) {
    session.destroy();
    throw err;
  }
}

export interface RetryOptions extends ConnectOptions {
  /** Give up after this long in total (a cold boot under TCG takes several seconds). */
  readonly deadlineMs: number;
  readonly signal?: AbortSignal;
}

const RETRY_FIRST_DELAY_MS = 100;
const RETRY_MAX_DELAY_MS = 2000;

/**
 * Connects through fresh streams from `open` until a hello succeeds or the deadline passes. Channel
 * failures (no answer, a stream that broke during the handshake) are retried with back-off from
 * 100 ms doubling to 2 s; answers of the agent (wrong token, other protocol version) are final.
 */
export async function connectWithRetry(
  open: (signal?: AbortSignal) => Promise<Duplex>,
  options: RetryOptions,
): Promise<AgentClient> {
  let attempts = 0;
  let lastError: unknown;
  return poll(
    async (remainingMs) => {
      attempts++;
      try {
        const stream = await open(options.signal);
        return await AgentClient.connect(stream, { ...options, timeoutMs: remainingMs });
      } catch (err) {
        if (wireCodeOf(err) !== undefined) throw err;
        lastError = err;
        log.debug(`agent connect attempt ${attempts} failed, retrying: ${(err as Error).message}`);
        return undefined;
      }
    },
    {
      timeoutMs: options.deadlineMs,
      delayMs: RETRY_FIRST_DELAY_MS,
      maxDelayMs: RETRY_MAX_DELAY_MS,
      signal: options.signal,
      onTimeout: () =>
        new FcvmError('AGENT', `Could not reach fc-agent in ${options.deadlineMs / 1000} s (${attempts} attempts).`, {
          cause: lastError,
        }),
    },
  );
}

function requestJson(
  session: http2.ClientHttp2Session,
  method: 'GET' | 'POST',
  path: string,
  body: unknown,
  timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = { ':method': method, ':path': path };
    if (body !== null) headers['content-type'] = JSON_CONTENT_TYPE;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: body === null });
    } catch (err) {
      reject(new FcvmError('AGENT', `The channel to fc-agent is closed (${path}).`, { cause: err }));
      return;
    }
    stream.setTimeout(timeoutMs, () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new FcvmError('AGENT', `fc-agent did not answer ${path} within ${timeoutMs / 1000} s.`));
    });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on('response', (responseHeaders) => {
      status = Number(responseHeaders[':status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const text = Buffer.concat(chunks);
      if (status < 200 || status > 299) {
        reject(agentErrorFromBody(status, text));
        return;
      }
      try {
        resolve(text.length === 0 ? {} : JSON.parse(text.toString('utf8')));
      } catch (err) {
        reject(new FcvmError('AGENT', `fc-agent answered ${path} with invalid JSON.`, { cause: err }));
      }
    });
    stream.on('error', (err) => {
      reject(new FcvmError('AGENT', `The channel to fc-agent broke during ${path}: ${err.message}`, { cause: err }));
    });
    stream.on('close', () => {
      if (status === 0) reject(new FcvmError('AGENT', `The channel to fc-agent closed during ${path}.`));
    });
    if (body !== null) stream.end(JSON.stringify(body));
  });
}
