/**
 * Where the memory controller lives on this host. A host has it either on the unified cgroup v2
 * hierarchy (systemd hosts since ~2021) or on a cgroup v1 `memory` hierarchy (hybrid layouts, as
 * on the project's CI machines, where cgroup2 only carries `hugetlb`). Never both: the kernel binds a
 * controller to one hierarchy.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export type MemoryHierarchy =
  | { readonly version: 2; readonly mountPoint: string }
  | { readonly version: 1; readonly mountPoint: string };

interface CgroupMount {
  readonly fsType: 'cgroup' | 'cgroup2';
  readonly mountPoint: string;
  readonly superOptions: readonly string[];
}

/** mountinfo escapes space, tab, newline and backslash in paths as \ooo octal. */
function unescapeMountPath(raw: string): string {
  return raw.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** The cgroup and cgroup2 mounts listed in a /proc/PID/mountinfo text. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    const before = line.slice(0, separator).split(' ');
    const after = line.slice(separator + 3).split(' ');
    const fsType = after[0];
    if ((fsType !== 'cgroup' && fsType !== 'cgroup2') || before[4] === undefined) continue;
    mounts.push({
      fsType,
      mountPoint: unescapeMountPath(before[4]),
      superOptions: (after[2] ?? '').split(','),
    });
  }
  return mounts;
}

function readControllers(mountPoint: string): string[] {
  try {
    return readFileSync(path.join(mountPoint, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
  } catch {
    // An unreadable cgroup2 mount simply does not offer the controller.
    return [];
  }
}

/**
 * The hierarchy holding the memory controller, or null when the host has none (memory cgroups
 * disabled, or no cgroup filesystem mounted in this mount namespace).
 */
export function findMemoryHierarchy(
  mountinfo: string = readFileSync('/proc/self/mountinfo', 'utf8'),
  controllersOf: (mountPoint: string) => readonly string[] = readControllers,
): MemoryHierarchy | null {
  const mounts = parseCgroupMounts(mountinfo);
  for (const mount of mounts) {
    if (mount.fsType === 'cgroup2' && controllersOf(mount.mountPoint).includes('memory')) {
      return { version: 2, mountPoint: mount.mountPoint };
    }
  }
  for (const mount of mounts) {
    if (mount.fsType === 'cgroup' && mount.superOptions.includes('memory')) {
      return { version: 1, mountPoint: mount.mountPoint };
    }
  }
  return null;
}
