/**
 * Starting a session on a raw byte stream: the preamble exchange (preamble.ts). After its echo the
 * agent sends nothing until the host has sent its first byte, so once the host has read the echo
 * the stream holds no unread bytes and can be handed to HTTP/2 as it is (a net.Socket then stays on
 * Node's native path).
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { encodePreamble, type Preamble, PreambleScanner } from './preamble.js';

/** Reads from `stream` until the scanner matches; rejects if the stream ends first or `signal` aborts. */
export function readPreamble(
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

/**
 * Host side: sends a preamble with a fresh nonce and waits for its echo, dropping anything before
 * it. The stream is then ready for HTTP/2.
 */
export async function startHostChannel(stream: Duplex, protocolVersion: number, signal?: AbortSignal): Promise<void> {
  const nonce = randomBytes(16).toString('hex');
  stream.write(encodePreamble({ protocolVersion, nonce }));
  const { rest } = await readPreamble(stream, new PreambleScanner(nonce), signal);
  // The agent sends nothing after its echo before the host speaks; keep the bytes if one ever does.
  if (rest.length > 0) stream.unshift(rest);
}
