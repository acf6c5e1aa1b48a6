import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideTrackDirtyPages, formatTrackDirtyPages } from '../../../src/hypervisor/policy.js';

const cases: Array<{
  hugepages: boolean;
  forStartupSnapshotBase: boolean;
  noDirtyTracking: boolean;
  want: boolean;
  why: string;
}> = [
  { hugepages: false, forStartupSnapshotBase: false, noDirtyTracking: false, want: true, why: 'default is on' },
  {
    hugepages: false,
    forStartupSnapshotBase: false,
    noDirtyTracking: true,
    want: false,
    why: '--no-dirty-tracking turns it off',
  },
  { hugepages: false, forStartupSnapshotBase: true, noDirtyTracking: false, want: true, why: 'startup base needs it' },
  {
    hugepages: false,
    forStartupSnapshotBase: true,
    noDirtyTracking: true,
    want: true,
    why: 'startup base wins over the flag',
  },
  { hugepages: true, forStartupSnapshotBase: false, noDirtyTracking: false, want: false, why: 'hugepages: never' },
  { hugepages: true, forStartupSnapshotBase: false, noDirtyTracking: true, want: false, why: 'hugepages: never' },
  {
    hugepages: true,
    forStartupSnapshotBase: true,
    noDirtyTracking: false,
    want: false,
    why: 'hugepages win over startup base',
  },
  { hugepages: true, forStartupSnapshotBase: true, noDirtyTracking: true, want: false, why: 'hugepages: never' },
];

for (const { want, why, ...input } of cases) {
  test(`decideTrackDirtyPages(${JSON.stringify(input)}) is ${want}: ${why}`, () => {
    assert.equal(decideTrackDirtyPages(input), want);
  });
}

test('the log line carries track_dirty_pages=<bool>', () => {
  assert.match(formatTrackDirtyPages(false), /track_dirty_pages=false/);
  assert.match(formatTrackDirtyPages(true, 'vm1'), /^VM vm1: .*track_dirty_pages=true$/);
});
