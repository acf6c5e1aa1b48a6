/**
 * Guest memory the VMM gave back (UFFD_EVENT_REMOVE, e.g. balloon inflation): its snapshot contents
 * are gone for good, so later faults there get zero pages. Kept as sorted, merged, half-open
 * intervals: a balloon can remove gigabytes, which a per-page set could not hold cheaply.
 */
export class RemovedRanges {
  private starts: number[] = [];
  private ends: number[] = [];

  get count(): number {
    return this.starts.length;
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    // First interval that ends at or after `start` (touching intervals merge).
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! < start) lo = mid + 1;
      else hi = mid;
    }
    let last = lo;
    let newStart = start;
    let newEnd = end;
    while (last < this.starts.length && this.starts[last]! <= end) {
      newStart = Math.min(newStart, this.starts[last]!);
      newEnd = Math.max(newEnd, this.ends[last]!);
      last++;
    }
    this.starts.splice(lo, last - lo, newStart);
    this.ends.splice(lo, last - lo, newEnd);
  }

  /** True when [start, start+length) lies inside one removed interval. */
  covers(start: number, length: number): boolean {
    if (this.starts.length === 0) return false;
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= start) lo = mid + 1;
      else hi = mid;
    }
    const index = lo - 1;
    return index >= 0 && this.ends[index]! >= start + length;
  }

  /** True when any byte of [start, start+length) was removed. */
  overlaps(start: number, length: number): boolean {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! <= start) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.starts.length && this.starts[lo]! < start + length;
  }
}
