import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Registry } from '../../../src/state/registry.js';
import { runCliAsync, tempDataDir } from '../../helpers/cli.js';

describe('fcvm ls', () => {
  const data = tempDataDir('fcvm-ls-');
  after(() => data.cleanup());
  const env = { FCVM_DATA_DIR: data.path };

  test('lists live records as a table and as JSON, filters by --pid, sweeps dead owners and their VM dirs', async () => {
    const registry = new Registry(join(data.path, 'state'));
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await registry.save({
        vm_id: 'vm-live',
        name: 'web',
        pid: sleeper.pid as number,
        status: 'running',
        health_status: 'healthy',
        config: {
          image: 'localhost/fcvm-busybox',
          memory_mib: 512,
          network: { guest_ip: '10.0.2.100', loopback_ip: '127.0.0.2' },
        },
      });
      await registry.save({ vm_id: 'vm-mine', name: 'other', pid: process.pid, status: 'starting' });
      // A record of a process that is gone, with its VM dir left behind.
      const dead = spawn('true');
      await new Promise((r) => dead.once('exit', r));
      await registry.save({ vm_id: 'vm-dead', name: 'gone', pid: dead.pid as number, pid_start_time: 1 });
      mkdirSync(join(data.path, 'vms', 'vm-dead'), { recursive: true });

      const table = await runCliAsync(['ls'], env);
      assert.equal(table.status, 0, table.stderr);
      const lines = table.stdout.trim().split('\n');
      assert.match(lines[0] ?? '', /^NAME\s+PID\s+TYPE\s+STATUS\s+HEALTH\s+HOST_ADDR\s+GUEST_IP\s+IMAGE\s+MEM\(MB\)$/);
      assert.equal(lines.length, 3);
      assert.match(
        table.stdout,
        /web\s+\d+\s+vm\s+running\s+healthy\s+127\.0\.0\.2\s+10\.0\.2\.100\s+localhost\/fcvm-busybox\s+512/,
      );
      assert.doesNotMatch(table.stdout, /gone/);
      assert.equal(existsSync(join(data.path, 'vms', 'vm-dead')), false, 'the dead VM dir was released');

      const json = await runCliAsync(['ls', '--json', '--pid', String(sleeper.pid)], env);
      assert.equal(json.status, 0, json.stderr);
      const records = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
      assert.equal(records.length, 1);
      assert.equal(records[0]?.name, 'web');
      assert.equal(records[0]?.health_status, 'healthy');
      assert.equal(json.stderr, '');
    } finally {
      sleeper.kill();
    }
  });
});
