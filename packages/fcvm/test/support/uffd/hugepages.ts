/**
 * Reserves 2 MiB hugetlb pages for a test (root only) and gives the old setting back afterwards.
 * Returns a reason instead when the machine cannot provide them, so the test can skip visibly.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';

function freeHugePages(): number {
  const match = /^HugePages_Free:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) : 0;
}

function hugePageSizeKib(): number {
  const match = /^Hugepagesize:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) : 0;
}

export type HugePageReservation =
  | { readonly ok: true; restore(): void }
  | { readonly ok: false; readonly reason: string };

export function reserveHugePages(count: number): HugePageReservation {
  if (hugePageSizeKib() !== 2048) return { ok: false, reason: 'the default hugetlb page size here is not 2 MiB' };
  const before = Number(readFileSync(NR_HUGEPAGES, 'utf8').trim());
  const missing = count - freeHugePages();
  if (missing <= 0) return { ok: true, restore: () => {} };
  if (process.getuid?.() !== 0) {
    return { ok: false, reason: `needs ${count} free 2 MiB hugetlb pages (${NR_HUGEPAGES}) and root to reserve them` };
  }
  const restore = () => writeFileSync(NR_HUGEPAGES, `${before}\n`);
  writeFileSync(NR_HUGEPAGES, `${before + missing}\n`);
  if (freeHugePages() < count) {
    restore();
    return { ok: false, reason: `the kernel could not reserve ${count} 2 MiB hugetlb pages (memory too fragmented?)` };
  }
  return { ok: true, restore };
}
