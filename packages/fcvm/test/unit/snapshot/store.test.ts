import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { dataDir } from '../../../src/data-dir.js';
import { isFcvmError } from '../../../src/errors.js';
import type { SnapshotMetadata } from '../../../src/snapshot/metadata.js';
import {
  childrenOf,
  creatingDir,
  deleteSnapshot,
  loadSnapshot,
  publishSnapshot,
  refuseIfParent,
  sweepAbandonedCreates,
  withSnapshotLock,
  writeSnapshotMetadata,
} from '../../../src/snapshot/store.js';
import { tempDataDir } from '../../helpers/cli.js';

function metadata(name: string, note: string): SnapshotMetadata {
  return {
    schema_version: 1,
    name,
    snapshot_type: 'user',
    created_at: new Date().toISOString(),
    hypervisor: 'qemu',
    source_vm_id: 'vm-src',
    source_name: note,
    image: null,
    vcpus: 1,
    memory_mib: 512,
    hugepages: false,
    parent: null,
    kind: 'full',
    container: { command: null, env: {}, user: null, workdir: null, tty: false, interactive: false },
    network: { mode: 'none', port_mappings: [], guest: null },
    kernel_path: null,
    assets: {},
    extra_disks: [],
    disk_format: 'qcow2',
    files: { memory: 'memory.bin', vmstate: 'vmstate.bin', disk: 'disk.qcow2' },
  };
}

function stage(dir: ReturnType<typeof dataDir>, name: string, note: string): void {
  const work = creatingDir(dir, name);
  mkdirSync(work, { recursive: true });
  for (const file of ['memory.bin', 'vmstate.bin', 'disk.qcow2']) writeFileSync(join(work, file), note);
  writeSnapshotMetadata(work, metadata(name, note));
}

describe('snapshot store: publish, load, lock', () => {
  const temp = tempDataDir('fcvm-store-');
  after(() => temp.cleanup());
  const dir = dataDir(temp.path);

  test('publish renames NAME.creating into place and replaces an older NAME only at the end', () => {
    stage(dir, 'web', 'first');
    publishSnapshot(dir, 'web');
    stage(dir, 'web', 'second');
    publishSnapshot(dir, 'web');
    assert.equal(loadSnapshot(dir, 'web').metadata.source_name, 'second');
    assert.deepEqual(readdirSync(dir.snapshots).sort(), ['web']);
    assert.equal(statSync(join(dir.snapshotDir('web'), 'snapshot.json')).mode & 0o777, 0o600);
  });

  test('load names the problem: unknown, unreadable metadata, a missing file', () => {
    const fails = (name: string, code: string, pattern: RegExp): void =>
      assert.throws(
        () => loadSnapshot(dir, name),
        (err: unknown) => isFcvmError(err) && err.code === code && pattern.test(err.message),
      );
    fails('nope', 'NOT_FOUND', /no snapshot named nope/);
    stage(dir, 'broken', 'x');
    publishSnapshot(dir, 'broken');
    writeFileSync(join(dir.snapshotDir('broken'), 'snapshot.json'), '{"name": ');
    fails('broken', 'STATE', /no readable metadata/);
    stage(dir, 'partial', 'x');
    publishSnapshot(dir, 'partial');
    rmSync(join(dir.snapshotDir('partial'), 'disk.qcow2'));
    fails('partial', 'STATE', /is incomplete/);
  });

  test("a snapshot whose clones' snapshots use its disk can be neither deleted nor replaced", () => {
    stage(dir, 'parent', 'p');
    publishSnapshot(dir, 'parent');
    const work = creatingDir(dir, 'child');
    mkdirSync(work, { recursive: true });
    for (const file of ['memory.bin', 'vmstate.bin', 'disk.qcow2']) writeFileSync(join(work, file), 'c');
    writeSnapshotMetadata(work, { ...metadata('child', 'c'), parent: 'parent' });
    publishSnapshot(dir, 'child');
    assert.deepEqual(childrenOf(dir, 'parent'), ['child']);
    assert.throws(() => deleteSnapshot(dir, 'parent'), /snapshot\(s\) child were taken from its clones/);
    assert.throws(() => refuseIfParent(dir, 'parent', 'replace'), /Cannot replace snapshot parent/);
    deleteSnapshot(dir, 'child');
    deleteSnapshot(dir, 'parent');
  });

  test('an abandoned NAME.creating (no lock holder) is swept; one being written is not', async () => {
    mkdirSync(creatingDir(dir, 'dead'), { recursive: true });
    mkdirSync(creatingDir(dir, 'busy'), { recursive: true });
    await withSnapshotLock(dir, 'busy', async () => {
      sweepAbandonedCreates(dir);
      assert.equal(existsSync(creatingDir(dir, 'dead')), false);
      assert.equal(existsSync(creatingDir(dir, 'busy')), true);
    });
  });

  test('creates of one name run one after the other', async () => {
    const order: string[] = [];
    const slow = withSnapshotLock(dir, 'same', async () => {
      order.push('a start');
      await new Promise((resolve) => setTimeout(resolve, 100));
      order.push('a end');
    });
    const fast = withSnapshotLock(dir, 'same', async () => {
      order.push('b');
    });
    await Promise.all([slow, fast]);
    assert.deepEqual(order, ['a start', 'a end', 'b']);
  });
});
