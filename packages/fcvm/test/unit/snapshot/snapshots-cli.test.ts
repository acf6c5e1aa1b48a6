import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { Registry } from '../../../src/state/registry.js';
import { runCliAsync, tempDataDir } from '../../helpers/cli.js';

describe('fcvm snapshots ls|delete|prune', () => {
  const data = tempDataDir('fcvm-snapshots-');
  after(() => data.cleanup());
  const env = { FCVM_DATA_DIR: data.path };
  const snapshotsDir = join(data.path, 'snapshots');

  function makeSnapshot(name: string, type: 'user' | 'system', image: string, complete = true): void {
    const dir = join(snapshotsDir, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'memory.bin'), Buffer.alloc(8192, 1));
    writeFileSync(join(dir, 'vmstate.bin'), 'state');
    if (complete) writeFileSync(join(dir, 'disk.qcow2'), 'disk');
    writeFileSync(
      join(dir, 'snapshot.json'),
      JSON.stringify({
        name,
        snapshot_type: type,
        created_at: '2026-11-27T10:00:00.000Z',
        hypervisor: 'qemu',
        source_vm_id: 'vm-src',
        image,
        vcpus: 2,
        memory_mib: 512,
        files: { memory: 'memory.bin', vmstate: 'vmstate.bin', disk: 'disk.qcow2' },
      }),
    );
  }

  beforeEach(() => {
    rmSync(snapshotsDir, { recursive: true, force: true });
    makeSnapshot('warm', 'user', 'localhost/fcvm-busybox');
    makeSnapshot('cache1', 'system', 'localhost/fcvm-busybox');
    makeSnapshot('cache2', 'system', 'docker.io/library/nginx');
    makeSnapshot('broken', 'user', 'x', false);
    mkdirSync(join(snapshotsDir, 'half.creating'), { recursive: true });
  });

  test('ls shows every snapshot with its state; --filter and --image narrow it; --json is parseable', async () => {
    const table = await runCliAsync(['snapshots', 'ls'], env);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+TYPE\s+IMAGE\s+HYPERVISOR\s+MEM\(MB\)\s+SIZE\s+CREATED\s+STATE/);
    assert.match(table.stdout, /warm\s+user\s+localhost\/fcvm-busybox\s+qemu\s+512/);
    assert.match(table.stdout, /broken.*incomplete/);
    assert.doesNotMatch(table.stdout, /creating/);

    const json = await runCliAsync(
      ['snapshots', 'ls', '--json', '--filter', 'system', '--image', 'localhost/fcvm-busybox'],
      env,
    );
    const list = JSON.parse(json.stdout) as Array<{ name: string; complete: boolean }>;
    assert.deepEqual(
      list.map((s) => s.name),
      ['cache1'],
    );
    assert.equal(list[0]?.complete, true);
  });

  test('delete removes one snapshot; a missing one exits 3; one in use needs --force', async () => {
    assert.equal((await runCliAsync(['snapshots', 'delete', 'warm'], env)).status, 0);
    assert.equal(existsSync(join(snapshotsDir, 'warm')), false);
    const missing = await runCliAsync(['snapshots', 'delete', 'warm'], env);
    assert.equal(missing.status, 3);
    assert.match(missing.stderr, /^fcvm: There is no snapshot named warm\.$/m);

    const registry = new Registry(join(data.path, 'state'));
    await registry.save({
      vm_id: 'vm-serve',
      pid: process.pid,
      config: { process_type: 'serve', snapshot_name: 'cache1' },
    });
    try {
      const busy = await runCliAsync(['snapshots', 'delete', 'cache1'], env);
      assert.equal(busy.status, 2);
      assert.match(busy.stderr, /in use by serve/);
      assert.equal((await runCliAsync(['snapshots', 'delete', '-f', 'cache1'], env)).status, 0);
    } finally {
      await registry.remove('vm-serve');
    }
  });

  test('prune without a terminal needs --force, deletes system snapshots only, --all also user ones', async () => {
    const refused = await runCliAsync(['snapshots', 'prune'], env);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /add --force/);
    assert.equal((await runCliAsync(['snapshots', 'prune', '-f'], env)).status, 0);
    assert.equal(existsSync(join(snapshotsDir, 'cache1')), false);
    assert.equal(existsSync(join(snapshotsDir, 'cache2')), false);
    assert.equal(existsSync(join(snapshotsDir, 'warm')), true);
    assert.equal((await runCliAsync(['snapshots', 'prune', '-f', '--all'], env)).status, 0);
    assert.equal(existsSync(join(snapshotsDir, 'warm')), false);
  });
});
