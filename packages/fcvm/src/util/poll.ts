/**
 * The one way fcvm waits for something to become true or retries something that may fail for a
 * while: a bounded loop with back-off that honours an AbortSignal, also while it sleeps.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions {
  /** Give up after this long in total. */
  readonly timeoutMs: number;
  /** The first pause between attempts; it doubles up to `maxDelayMs` (default: stays the same). */
  readonly delayMs: number;
  readonly maxDelayMs?: number;
  readonly signal?: AbortSignal | undefined;
  /** The error to throw when time is up (the caller's sentence; its cause is the last failure it saw). */
  readonly onTimeout: () => Error;
}

/**
 * Calls `attempt` (with the time left) until it returns something other than undefined, and returns
 * that. An error thrown by `attempt` ends the poll: an attempt that may fail for a while catches its
 * retriable errors and returns undefined. The poll rejects with the signal's reason when it aborts,
 * and with `onTimeout()` when the next pause would end past the deadline.
 */
export async function poll<T>(
  attempt: (remainingMs: number) => Promise<T | undefined>,
  options: PollOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = options.delayMs;
  for (;;) {
    options.signal?.throwIfAborted();
    const result = await attempt(Math.max(1, deadline - Date.now()));
    if (result !== undefined) return result;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw options.onTimeout();
    try {
      await sleep(Math.min(delay, remaining), undefined, options.signal ? { signal: options.signal } : undefined);
    } catch (err) {
      options.signal?.throwIfAborted(); // the signal's reason, as at the top of the loop
      throw err;
    }
    delay = Math.min(delay * 2, options.maxDelayMs ?? options.delayMs);
  }
}
