/**
 * Liveness of an HTTP/2 session on the channel: both ends send an HTTP/2 PING every
 * PING_INTERVAL_MS and call a peer silent when no PING has been answered for PING_SILENT_MS. HTTP/2
 * answers PINGs below the application, so a busy peer still answers; a silent one is gone, stalled
 * or cut off (a lost virtio-serial session, a dead agent, a paused VM). Only types come from
 * node:http2, so the package stays free of runtime dependencies.
 */
import type { Http2Session } from 'node:http2';

export const PING_INTERVAL_MS = 5_000;
/** Generous for a guest under software emulation on a loaded host; see docs/agent-channel.md. */
export const PING_SILENT_MS = 30_000;

export interface LivenessOptions {
  readonly intervalMs?: number;
  readonly silentMs?: number;
}

/**
 * Pings `session` until it closes; calls `onSilent` once when no answer came for `silentMs`.
 * Returns a function that stops watching (and `suspend()` pauses it, for a VM that is paused on
 * purpose: the returned resume function restarts the clock).
 */
export function watchLiveness(
  session: Http2Session,
  onSilent: (silentMs: number) => void,
  options: LivenessOptions = {},
): { stop: () => void; suspend: () => () => void } {
  const intervalMs = options.intervalMs ?? PING_INTERVAL_MS;
  const silentMs = options.silentMs ?? PING_SILENT_MS;
  let lastAnswer = performance.now();
  let inFlight = false;
  let suspended = 0;
  const timer = setInterval(() => {
    if (session.closed || session.destroyed) return stop();
    if (suspended > 0) return;
    const silentFor = performance.now() - lastAnswer;
    if (silentFor >= silentMs) {
      stop();
      onSilent(silentFor);
      return;
    }
    if (inFlight) return;
    inFlight = true;
    try {
      session.ping((err) => {
        inFlight = false;
        if (err === null) lastAnswer = performance.now();
      });
    } catch {
      inFlight = false; // the session is closing; the next tick stops
    }
  }, intervalMs);
  timer.unref();
  const stop = (): void => clearInterval(timer);
  session.once('close', stop);
  const suspend = (): (() => void) => {
    suspended++;
    let resumed = false;
    return () => {
      if (resumed) return;
      resumed = true;
      suspended--;
      lastAnswer = performance.now();
    };
  };
  return { stop, suspend };
}
