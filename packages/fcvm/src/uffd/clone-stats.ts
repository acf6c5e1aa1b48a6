/**
 * Per-clone counters, shared between the clone's worker thread (which writes them on every fault)
 * and the main thread (which reads them once a second for the registry). A Float64Array over a
 * SharedArrayBuffer: no messages on the fault path, and aligned 8-byte reads are never torn on the
 * 64-bit targets we support.
 *
 *   faults          page faults answered (a page that two threads faulted at once counts twice)
 *   bytes           bytes placed into the clone, zero pages included
 *   zero_pages      pages answered with zeros (removed by the VMM, or past the end of the memory file)
 *   removes         REMOVE events (balloon inflation, madvise)
 *   eagain_retries  copies retried because the clone's address space was changing
 *   errors          failures (a failure ends that clone's service)
 */
export const STAT_FIELDS = ['faults', 'bytes', 'zero_pages', 'removes', 'eagain_retries', 'errors'] as const;
export type StatField = (typeof STAT_FIELDS)[number];
export type CloneCounters = Record<StatField, number>;

const INDEX: Record<StatField, number> = Object.fromEntries(STAT_FIELDS.map((name, i) => [name, i])) as Record<
  StatField,
  number
>;

export function newStatsBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(8 * STAT_FIELDS.length);
}

export class CloneStatsWriter {
  private readonly values: Float64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.values = new Float64Array(buffer);
  }

  add(field: StatField, amount = 1): void {
    this.values[INDEX[field]]! += amount;
  }
}

export function readStats(buffer: SharedArrayBuffer): CloneCounters {
  const values = new Float64Array(buffer);
  return Object.fromEntries(STAT_FIELDS.map((name, i) => [name, values[i]!])) as CloneCounters;
}
