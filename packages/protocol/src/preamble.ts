/**
 * The channel preamble: one line each way before HTTP/2 starts, marking where a session begins.
 *
 *   host  -> agent:  "FCVM-CHANNEL <protocol version> <nonce: 32 hex>\n"
 *   agent -> host:   the same line, echoed
 *
 * Why: on virtio-serial a guest write(2) that was blocked when the previous host went away completes
 * once the next host connects, so a new session can begin with stale bytes of the old one. Each side
 * drops everything before the preamble it expects, so such leftovers can never be read as HTTP/2.
 */
const MAGIC = 'FCVM-CHANNEL';
const PREAMBLE_PATTERN = /FCVM-CHANNEL (\d{1,5}) ([0-9a-f]{32})\n/;
/** Longest leftover kept while searching: a preamble split across reads still matches. */
const SCAN_WINDOW = 128;

export interface Preamble {
  readonly protocolVersion: number;
  readonly nonce: string;
}

export function encodePreamble(preamble: Preamble): Buffer {
  return Buffer.from(`${MAGIC} ${preamble.protocolVersion} ${preamble.nonce}\n`, 'latin1');
}

/**
 * Finds a preamble in a byte stream. push() returns null until one is complete, then the preamble
 * and the bytes that followed it (the start of HTTP/2); everything before it is dropped.
 */
export class PreambleScanner {
  private pending = '';
  private readonly expectedNonce: string | null;

  /** `expectedNonce`: the host waits for its own nonce; the agent accepts any. */
  constructor(expectedNonce: string | null = null) {
    this.expectedNonce = expectedNonce;
  }

  push(chunk: Buffer): { preamble: Preamble; rest: Buffer } | null {
    // latin1 maps every byte to one char, so offsets in the string are offsets in the bytes.
    this.pending += chunk.toString('latin1');
    for (;;) {
      const match = PREAMBLE_PATTERN.exec(this.pending);
      if (match === null) break;
      const preamble: Preamble = { protocolVersion: Number(match[1]), nonce: match[2] ?? '' };
      const end = match.index + match[0].length;
      if (this.expectedNonce === null || preamble.nonce === this.expectedNonce) {
        return { preamble, rest: Buffer.from(this.pending.slice(end), 'latin1') };
      }
      this.pending = this.pending.slice(end);
    }
    if (this.pending.length > SCAN_WINDOW) this.pending = this.pending.slice(-SCAN_WINDOW);
    return null;
  }
}

const WHOLE_PREAMBLE = /^FCVM-CHANNEL \d{1,5} [0-9a-f]{32}\n$/;

/**
 * True when `chunk` is exactly one preamble line. A host sends its preamble alone and waits for the
 * echo, so on virtio-serial (where each guest read returns bytes of one host write) a read that is
 * exactly a preamble marks a new host even before the old one's disconnect has been seen.
 */
export function isWholePreamble(chunk: Buffer): boolean {
  return chunk.length <= 64 && WHOLE_PREAMBLE.test(chunk.toString('latin1'));
}
