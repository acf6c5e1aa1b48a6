/**
 * Facts about host processes from /proc. A recorded PID is only trusted together with its start
 * time: the kernel reuses PIDs, and a record must never adopt (or signal) a stranger.
 */
import { readFileSync } from 'node:fs';

/** Start time in clock ticks since boot (field 22 of /proc/PID/stat), or undefined if gone. */
export function processStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  if (state === 'Z' || state === 'X') return undefined;
  const start = Number(rest[19]);
  return Number.isFinite(start) ? start : undefined;
}

/** True when `pid` is alive and, if `startTime` is given, is the same process that was recorded. */
export function isSameProcessAlive(pid: number, startTime?: number): boolean {
  const actual = processStartTime(pid);
  if (actual === undefined) return false;
  return startTime === undefined || actual === startTime;
}
