/**
 * Starting a session on a raw byte stream: the preamble exchange (preamble.ts), then a Duplex
 * that carries exactly this session's bytes (what followed the preamble, then the rest of the
 * stream). Both sides use it; HTTP/2 then runs on the returned Duplex.
 */
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { encodePreamble, type Preamble, PreambleScanner } from './preamble.js';

/** Relays an underlying stream after its first bytes were consumed, starting with `head`. */
class SessionStream extends Duplex {
  private readonly inner: Duplex;

  constructor(inner: Duplex, head: Buffer) {
    super();
    this.inner = inner;
    if (head.length > 0) this.push(head);
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err) => this.destroy(err));
    inner.once('close', () => this.destroy());
    inner.resume();
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.inner.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(error);
  }
}

/** Waits for the scanner to match; rejects if the stream ends first or `signal` aborts. */
function scanFor(
  stream: Duplex,
  scanner: PreambleScanner,
  signal?: AbortSignal,
): Promise<{ preamble: Preamble; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      const found = scanner.push(chunk);
      if (found === null) return;
      stream.pause();
      cleanup();
      resolve(found);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error('the channel closed before the session preamble'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal?.aborted) return onAbort();
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Host side: sends a preamble with a fresh nonce, waits for its echo, drops anything before it. */
export async function startHostChannel(stream: Duplex, protocolVersion: number, signal?: AbortSignal): Promise<Duplex> {
  const nonce = randomBytes(16).toString('hex');
  stream.write(encodePreamble({ protocolVersion, nonce }));
  const { rest } = await scanFor(stream, new PreambleScanner(nonce), signal);
  return new SessionStream(stream, rest);
}

/** Agent side: waits for a host's preamble (dropping anything before it) and echoes it. */
export async function acceptAgentChannel(
  stream: Duplex,
  signal?: AbortSignal,
): Promise<{ preamble: Preamble; session: Duplex }> {
  const { preamble, rest } = await scanFor(stream, new PreambleScanner(null), signal);
  stream.write(encodePreamble(preamble));
  return { preamble, session: new SessionStream(stream, rest) };
}
