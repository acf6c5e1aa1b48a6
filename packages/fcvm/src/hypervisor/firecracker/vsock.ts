/**
 * Host-initiated connections over Firecracker's hybrid vsock: connect to the device's Unix socket,
 * send `CONNECT <port>\n` in one write (Firecracker drops the connection if the line arrives
 * split), read `OK <host port>\n`; the stream is raw from then on. Bytes that follow the `OK` line
 * in the same chunk already belong to the guest and are put back into the stream.
 *
 * When nothing listens on the guest port, Firecracker closes the connection without a word; while
 * the VM is paused or still booting it closes it after 2 s. Both are "try again later".
 */
import { connect, type Socket } from 'node:net';
import { errnoCode, FcvmError } from '../../errors.js';
import { poll } from '../../util/poll.js';

const MAX_REPLY_BYTES = 64;

export type VsockFailure = 'unreachable' | 'no-listener' | 'bad-reply' | 'timeout' | 'aborted';

export class VsockConnectError extends FcvmError {
  readonly failure: VsockFailure;
  constructor(failure: VsockFailure, message: string, cause?: unknown) {
    super('HYPERVISOR', message, { cause, context: { failure } });
    this.failure = failure;
  }
}

/**
 * The host side's answer to `CONNECT <port>`: `OK <n>` then the guest's first bytes (returned, to put
 * back), not yet a whole line, or a bad reply.
 */
function parseConnectReply(received: Buffer, udsPath: string): Buffer | 'incomplete' | VsockConnectError {
  const newline = received.indexOf(0x0a);
  if (newline === -1) {
    if (received.length <= MAX_REPLY_BYTES) return 'incomplete';
    return new VsockConnectError('bad-reply', `The vsock socket ${udsPath} answered CONNECT with an overlong line.`);
  }
  const line = received.subarray(0, newline).toString('latin1');
  if (!/^OK \d+$/.test(line)) {
    return new VsockConnectError(
      'bad-reply',
      `The vsock socket ${udsPath} answered CONNECT with ${JSON.stringify(line)}, not "OK <port>".`,
    );
  }
  return received.subarray(newline + 1);
}

/** One attempt: a connected raw stream to `port` in the guest, or a VsockConnectError. */
export function connectHybridVsock(
  udsPath: string,
  port: number,
  options: { timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect({ path: udsPath });
    let received = Buffer.alloc(0);
    let settled = false;

    const finish = (err: VsockConnectError | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const onAbort = () =>
      finish(new VsockConnectError('aborted', `Connecting to guest vsock port ${port} was cancelled.`));
    const onError = (err: Error) => {
      const code = errnoCode(err);
      const failure: VsockFailure = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'unreachable' : 'no-listener';
      finish(
        new VsockConnectError(
          failure,
          `Could not connect to the VM's vsock socket ${udsPath}: ${code ?? err.message}.`,
          err,
        ),
      );
    };
    const onClose = () =>
      finish(new VsockConnectError('no-listener', `Nothing in the guest accepted a connection on vsock port ${port}.`));
    // Read in paused mode ('readable' + read()): a 'data' listener would switch the socket to
    // flowing mode, and guest bytes put back with unshift() would then be emitted before the
    // caller has attached its own listener, i.e. lost.
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        received = Buffer.concat([received, chunk]);
      }
      const reply = parseConnectReply(received, udsPath);
      if (reply === 'incomplete') return;
      if (reply instanceof VsockConnectError) return finish(reply);
      finish(null);
      if (reply.length > 0) socket.unshift(reply);
    };

    const timer = setTimeout(
      () =>
        finish(
          new VsockConnectError(
            'timeout',
            `The guest did not answer on vsock port ${port} within ${options.timeoutMs} ms.`,
          ),
        ),
      options.timeoutMs,
    );
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('readable', onReadable);
    socket.once('connect', () => socket.write(`CONNECT ${port}\n`));
  });
}

export interface ChannelRetryOptions {
  readonly signal?: AbortSignal | undefined;
  /** Give up after this long; the caller's signal can end it sooner. */
  readonly totalTimeoutMs: number;
  /** Stop early when this says the VM is gone (returns the error to throw). */
  readonly vmGone?: () => Error | undefined;
}

/** Retries with back-off while the guest is not listening yet (booting, just resumed). */
export async function connectWithRetry(udsPath: string, port: number, options: ChannelRetryOptions): Promise<Socket> {
  let lastError: VsockConnectError | undefined;
  try {
    return await poll(
      async (remainingMs) => {
        const gone = options.vmGone?.();
        if (gone) throw gone;
        try {
          return await connectHybridVsock(udsPath, port, {
            timeoutMs: Math.min(remainingMs, 3000),
            signal: options.signal,
          });
        } catch (err) {
          if (!(err instanceof VsockConnectError) || err.failure === 'aborted' || err.failure === 'bad-reply')
            throw err;
          lastError = err;
          return undefined;
        }
      },
      {
        timeoutMs: options.totalTimeoutMs,
        delayMs: 50,
        maxDelayMs: 500,
        signal: options.signal,
        onTimeout: () =>
          new FcvmError(
            'HYPERVISOR',
            `The guest agent did not accept a connection on vsock port ${port} within ${options.totalTimeoutMs / 1000} s.`,
            { cause: lastError },
          ),
      },
    );
  } catch (err) {
    if (options.signal?.aborted && !(err instanceof VsockConnectError)) {
      throw new VsockConnectError('aborted', `Connecting to guest vsock port ${port} was cancelled.`, err);
    }
    throw err;
  }
}
