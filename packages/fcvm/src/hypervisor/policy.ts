/**
 * Decisions the snapshot code takes before it asks a VMM for something, kept as small pure
 * functions so they can be tested without a VM (seed change fcvm#536, reference §8.4).
 */
import { log } from '../log.js';

export interface DirtyTrackingInput {
  /** The snapshot's guest memory is backed by 2 MiB huge pages. */
  readonly hugepages: boolean;
  /** This restore will be the base of a startup (diff) snapshot, so it must track dirty pages. */
  readonly forStartupSnapshotBase: boolean;
  /** The user passed `--no-dirty-tracking`. */
  readonly noDirtyTracking: boolean;
}

/**
 * Whether a restore turns on KVM dirty-page tracking (`track_dirty_pages`).
 *
 * - Hugepage VMs: never. Dirty logging makes KVM split each 2 MiB mapping into 4 KiB pages,
 *   which throws away the reason for using huge pages (the guard the seed change restored).
 * - A restore that a startup diff snapshot will be taken from: always, because the diff needs
 *   the dirty log to contain only what changed.
 * - Otherwise on, unless the user opted out with `--no-dirty-tracking`. Such a clone cannot be
 *   the source of an exact diff snapshot later.
 */
export function decideTrackDirtyPages(input: DirtyTrackingInput): boolean {
  if (input.hugepages) return false;
  if (input.forStartupSnapshotBase) return true;
  return !input.noDirtyTracking;
}

/** The log text tests and users grep for: `track_dirty_pages=<bool>`. */
export function formatTrackDirtyPages(trackDirtyPages: boolean, vmId?: string): string {
  return `${vmId === undefined ? '' : `VM ${vmId}: `}restoring snapshot with track_dirty_pages=${trackDirtyPages}`;
}

/** Logs the decision at info level; call it right before the restore that uses it. */
export function logTrackDirtyPages(trackDirtyPages: boolean, vmId?: string): void {
  log.info(formatTrackDirtyPages(trackDirtyPages, vmId));
}
