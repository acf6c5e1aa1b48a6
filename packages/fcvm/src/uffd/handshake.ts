/**
 * Firecracker's UFFD handshake (reference firecracker-protocols §4.1-4.2): after connecting, the VMM
 * sends ONE message: a compact JSON array of guest memory regions plus the userfaultfd as SCM_RIGHTS.
 * There is no length prefix and (since v1.12) no EOF: the socket stays open. So bytes are collected
 * until they form a complete JSON array, then parsed and checked here.
 *
 *   [{"base_host_virt_addr":N,"size":N,"offset":N,"page_size":4096,"page_size_kib":4096}, ...]
 *
 * `page_size` exists from v1.12, `page_size_kib` (in bytes despite its name) from v1.7 to 2.0;
 * older versions send neither and mean 4 KiB.
 */
export const PAGE_SIZE_4K = 4096;
export const PAGE_SIZE_2M = 2 * 1024 * 1024;
/** A handshake larger than this is not Firecracker's: a few regions take a few hundred bytes. */
export const MAX_HANDSHAKE_BYTES = 1024 * 1024;

export interface GuestRegion {
  /** Start of the region in the VMM's address space: the destination of UFFDIO_COPY. */
  readonly base: number;
  readonly size: number;
  /** Where the region's bytes start in the memory file. */
  readonly offset: number;
  readonly pageSize: number;
}

export class HandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HandshakeError';
  }
}

/** The region fields this server uses, checked by hand: zod would triple the worker bundle (and its memory per clone). */
interface RawRegion {
  readonly base_host_virt_addr: number;
  readonly size: number;
  readonly offset: number;
  readonly page_size?: number;
  readonly page_size_kib?: number;
}

function isU64(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function checkRegion(value: unknown, index: number): RawRegion {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HandshakeError(`the handshake regions are invalid at ${index}: not an object`);
  }
  const fields = value as Record<string, unknown>;
  for (const key of ['base_host_virt_addr', 'size', 'offset']) {
    if (!isU64(fields[key]))
      throw new HandshakeError(`the handshake regions are invalid at ${index}.${key}: not an unsigned integer`);
  }
  for (const key of ['page_size', 'page_size_kib']) {
    if (fields[key] !== undefined && !isU64(fields[key])) {
      throw new HandshakeError(`the handshake regions are invalid at ${index}.${key}: not an unsigned integer`);
    }
  }
  if (fields.size === 0) throw new HandshakeError(`the handshake regions are invalid at ${index}.size: zero`);
  return fields as unknown as RawRegion;
}

/**
 * Tells when the bytes received so far hold one complete top-level JSON array, tracking strings
 * and escapes so brackets inside strings do not count.
 */
export class JsonArrayFramer {
  private readonly chunks: Buffer[] = [];
  private total = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private started = false;
  private end = -1;

  /** Adds bytes; returns true once the array is complete (bytes after it are ignored). */
  push(bytes: Buffer): boolean {
    if (this.end >= 0) return true;
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i];
      if (!this.started) {
        if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
        if (c !== 0x5b) throw new HandshakeError('the handshake does not start with a JSON array');
        this.started = true;
        this.depth = 1;
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c) this.escaped = true;
        else if (c === 0x22) this.inString = false;
        continue;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x5b || c === 0x7b) this.depth++;
      else if (c === 0x5d || c === 0x7d) {
        this.depth--;
        if (this.depth === 0) {
          this.end = this.total + i + 1;
          break;
        }
      }
    }
    this.chunks.push(Buffer.from(bytes));
    this.total += bytes.length;
    if (this.end < 0 && this.total > MAX_HANDSHAKE_BYTES) {
      throw new HandshakeError(`the handshake exceeds ${MAX_HANDSHAKE_BYTES} bytes without a complete JSON array`);
    }
    return this.end >= 0;
  }

  get complete(): boolean {
    return this.end >= 0;
  }

  text(): string {
    return Buffer.concat(this.chunks).subarray(0, this.end).toString('utf8');
  }
}

/** Parses and checks the region list; `fileSize` is only used for the sanity check on offsets. */
export function parseRegions(text: string): GuestRegion[] {
  // Integers beyond 2^53 would silently lose precision in JSON.parse: refuse them instead.
  for (const match of text.matchAll(/\d{16,}/g)) {
    if (BigInt(match[0]) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new HandshakeError(`the handshake holds the number ${match[0]}, beyond what this server handles exactly`);
    }
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new HandshakeError(`the handshake is not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new HandshakeError('the handshake regions are invalid at top: not a non-empty array');
  }
  const regions = raw.map((value: unknown, index: number): GuestRegion => {
    const region = checkRegion(value, index);
    const pageSize = region.page_size ?? region.page_size_kib ?? PAGE_SIZE_4K;
    if (
      region.page_size !== undefined &&
      region.page_size_kib !== undefined &&
      region.page_size !== region.page_size_kib
    ) {
      throw new HandshakeError(`region ${index} gives two different page sizes`);
    }
    if (pageSize !== PAGE_SIZE_4K && pageSize !== PAGE_SIZE_2M) {
      throw new HandshakeError(`region ${index} has page size ${pageSize}; only 4096 and 2097152 are supported`);
    }
    if (region.base_host_virt_addr % pageSize !== 0 || region.size % pageSize !== 0) {
      throw new HandshakeError(`region ${index} is not aligned to its page size ${pageSize}`);
    }
    return { base: region.base_host_virt_addr, size: region.size, offset: region.offset, pageSize };
  });
  const byBase = [...regions].sort((a, b) => a.base - b.base);
  for (let i = 1; i < byBase.length; i++) {
    const previous = byBase[i - 1]!;
    if (previous.base + previous.size > byBase[i]!.base) throw new HandshakeError('two handshake regions overlap');
  }
  return regions;
}
