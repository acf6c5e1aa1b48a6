import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Registry } from '../../../src/state/registry.js';
import { processStartTime } from '../../../src/util/proc.js';
import { tempDataDir } from '../../helpers/cli.js';

const WORKER = join(import.meta.dirname, '../../helpers/registry-worker.ts');

describe('registry', () => {
  const data = tempDataDir('fcvm-registry-');
  after(() => data.cleanup());

  test('24 concurrent processes write, read and sweep without losing or corrupting a record', async () => {
    const stateDir = join(data.path, 'concurrent');
    const workers = 24;
    const rounds = 20;
    const children: ChildProcess[] = [];
    const outputs = await Promise.all(
      Array.from({ length: workers }, (_, index) => {
        const child = spawn(process.execPath, ['--import', 'tsx', WORKER, stateDir, String(index), String(rounds)], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        children.push(child);
        return new Promise<string>((resolve, reject) => {
          let out = '';
          child.stdout?.setEncoding('utf8').on('data', (d: string) => {
            out += d;
            if (out.includes('\n')) resolve(out.trim());
          });
          child.on('exit', (code) => {
            if (!out.includes('\n')) reject(new Error(`worker ${index} exited with ${code} before finishing`));
          });
        });
      }),
    );
    try {
      assert.deepEqual(outputs, Array(workers).fill('done 0'), 'every worker always saw its own record');
      // Even workers have exited: wait until their processes are really gone.
      await Promise.all(
        children
          .filter((_, i) => i % 2 === 0)
          .map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))),
      );
      const registry = new Registry(stateDir);
      // Dead workers' records may already have been swept by live workers' sweeps; none may remain.
      const swept = await registry.sweep();
      assert.ok(
        swept.every((r) => Number(r.vm_id.split('-').pop()) % 2 === 0),
        'only dead owners are swept',
      );
      const live = registry.readAll();
      assert.deepEqual(
        live.map((r) => r.vm_id).sort(),
        Array.from({ length: workers / 2 }, (_, i) => `vm-worker-${i * 2 + 1}`).sort(),
        'exactly the live workers keep their records',
      );
      for (const record of live) {
        assert.equal(record.config.labels.count, String(rounds), `${record.vm_id} kept every update`);
        assert.equal(record.pid_start_time, processStartTime(record.pid));
      }
      assert.deepEqual(
        readdirSync(stateDir).filter((f) => !f.endsWith('.json') && f !== 'registry.lock'),
        [],
        'no temp files left',
      );
    } finally {
      for (const child of children) child.stdin?.end();
      await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    }
  });

  test('a record whose PID now belongs to another process is stale', async () => {
    const registry = new Registry(join(data.path, 'reuse'));
    const startTime = processStartTime(process.pid) as number;
    await registry.save({ vm_id: 'vm-reused', pid: process.pid, pid_start_time: startTime - 1 });
    assert.equal(registry.live().length, 0);
    assert.deepEqual(
      (await registry.sweep()).map((r) => r.vm_id),
      ['vm-reused'],
    );
  });

  test('saving a record removes another record claiming the same process', async () => {
    const registry = new Registry(join(data.path, 'dupe'));
    await registry.save({ vm_id: 'vm-old', pid: process.pid });
    await registry.save({ vm_id: 'vm-new', pid: process.pid });
    assert.deepEqual(
      registry.readAll().map((r) => r.vm_id),
      ['vm-new'],
    );
  });

  test('unknown fields are kept and missing ones get defaults; unreadable files are ignored', async () => {
    const dir = join(data.path, 'tolerant');
    const registry = new Registry(dir);
    const now = new Date().toISOString();
    writeFileSync(
      join(dir, 'vm-future.json'),
      JSON.stringify({
        vm_id: 'vm-future',
        pid: process.pid,
        created_at: now,
        last_updated: now,
        from_the_future: { x: 1 },
      }),
    );
    writeFileSync(join(dir, 'vm-broken.json'), '{"vm_id": ');
    const [record] = registry.readAll();
    assert.equal(record?.vm_id, 'vm-future');
    assert.equal(record?.status, 'starting');
    assert.equal(record?.config.network.mode, 'rootless');
    assert.deepEqual((record as Record<string, unknown>).from_the_future, { x: 1 });
  });

  test('orphaned temp files of dead writers are removed by a sweep', async () => {
    const dir = join(data.path, 'orphans');
    const registry = new Registry(dir);
    writeFileSync(join(dir, 'vm-x.json.999999999.tmp'), '{');
    await registry.sweep();
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.tmp')),
      [],
    );
  });
});
