import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findMemoryHierarchy, parseCgroupMounts } from '../../../src/cgroup/memory-hierarchy.js';

// Abridged from this project's CI host (hybrid layout) and from a systemd host (unified layout).
const HYBRID = `
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const UNIFIED = `
28 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

test('parseCgroupMounts reads mount points and super options', () => {
  assert.deepEqual(
    parseCgroupMounts(HYBRID).map((m) => [m.fsType, m.mountPoint]),
    [
      ['cgroup', '/sys/fs/cgroup/cpu'],
      ['cgroup', '/sys/fs/cgroup/memory'],
      ['cgroup2', '/sys/fs/cgroup/unified'],
    ],
  );
  const [escaped] = parseCgroupMounts('1 2 0:1 / /mnt/cg\\040root rw - cgroup2 none rw\n');
  assert.equal(escaped?.mountPoint, '/mnt/cg root');
});

test('hybrid layout: memory is on cgroup v1 when cgroup2 lacks it', () => {
  const controllers = (mountPoint: string) => (mountPoint === '/sys/fs/cgroup/unified' ? ['hugetlb'] : []);
  assert.deepEqual(findMemoryHierarchy(HYBRID, controllers), { version: 1, mountPoint: '/sys/fs/cgroup/memory' });
});

test('unified layout: memory is on cgroup v2', () => {
  const controllers = () => ['cpuset', 'cpu', 'io', 'memory', 'pids'];
  assert.deepEqual(findMemoryHierarchy(UNIFIED, controllers), { version: 2, mountPoint: '/sys/fs/cgroup' });
});

test('no memory controller anywhere', () => {
  assert.equal(
    findMemoryHierarchy(UNIFIED, () => ['cpu']),
    null,
  );
});

test('this host has a memory hierarchy', () => {
  assert.notEqual(findMemoryHierarchy(), null);
});
