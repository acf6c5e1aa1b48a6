import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RemovedRanges } from '../../../src/uffd/removed-ranges.js';

test('RemovedRanges merges touching and overlapping ranges and answers overlap queries', () => {
  const ranges = new RemovedRanges();
  ranges.add(0x10000, 0x20000);
  ranges.add(0x40000, 0x50000);
  ranges.add(0x20000, 0x30000); // touches the first: merged
  assert.equal(ranges.count, 2);
  assert.equal(ranges.overlaps(0x2f000, 0x1000), true);
  assert.equal(ranges.overlaps(0x30000, 0x1000), false);
  assert.equal(ranges.overlaps(0x3f000, 0x2000), true);
  assert.equal(ranges.overlaps(0x0, 0x10000), false);
  assert.equal(ranges.covers(0x10000, 0x20000), true);
  assert.equal(ranges.covers(0x2f000, 0x2000), false);
  ranges.add(0x18000, 0x48000); // bridges both
  assert.equal(ranges.count, 1);
  assert.equal(ranges.covers(0x10000, 0x40000), true);
  ranges.add(0x60000, 0x60000); // empty: ignored
  assert.equal(ranges.count, 1);
});
