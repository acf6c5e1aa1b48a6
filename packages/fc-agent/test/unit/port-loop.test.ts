/**
 * The virtio-serial reader loop against a scripted port that replays what a real guest showed:
 * stale bytes, a new host's preamble read before the old host's EOF, and late EOFs.
 */
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { encodePreamble } from '@fcvm/protocol';
import { type PortIo, servePort } from '../../src/channel.js';

const preamble = (n: number): Buffer => encodePreamble({ protocolVersion: 1, nonce: String(n).repeat(32) });

/** Replays `reads` (a number is that many EOF reads) then aborts the loop. */
function scriptedPort(reads: (Buffer | string | 0)[], stop: AbortController): PortIo & { written: Buffer[] } {
  const queue = [...reads];
  const written: Buffer[] = [];
  return {
    written,
    async read(buffer) {
      const next = queue.shift();
      if (next === undefined) {
        stop.abort();
        return 0;
      }
      if (next === 0) return 0;
      const bytes = typeof next === 'string' ? Buffer.from(next) : next;
      bytes.copy(buffer);
      return bytes.length;
    },
    async writeAll(chunk) {
      written.push(chunk);
    },
    async close() {},
  };
}

async function sessionsFor(reads: (Buffer | string | 0)[]): Promise<string[][]> {
  const stop = new AbortController();
  const sessions: { chunks: string[]; ended: Promise<void> }[] = [];
  const handle = async (stream: Duplex): Promise<void> => {
    const chunks: string[] = [];
    const ended = new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer) =>
        chunks.push(chunk.toString('latin1').startsWith('FCVM-CHANNEL') ? 'P' : chunk.toString()),
      );
      stream.on('end', resolve);
      stream.on('close', resolve);
    });
    sessions.push({ chunks, ended });
  };
  await servePort(scriptedPort(reads, stop), handle, stop.signal);
  return sessions.map((s) => s.chunks);
}

test('a preamble read before the old host EOF starts a new session', async () => {
  assert.deepEqual(await sessionsFor([preamble(1), 'a', 'b', preamble(2), 'c']), [
    ['P', 'a', 'b'],
    ['P', 'c'],
  ]);
});

test('a late EOF right after a preamble does not end the new session', async () => {
  assert.deepEqual(await sessionsFor([preamble(1), 'a', preamble(2), 0, 'c']), [
    ['P', 'a'],
    ['P', 'c'],
  ]);
});

test('an EOF after session data ends it; the next bytes start another', async () => {
  assert.deepEqual(await sessionsFor([preamble(1), 'a', 0, 0, preamble(2), 'b']), [
    ['P', 'a'],
    ['P', 'b'],
  ]);
});
