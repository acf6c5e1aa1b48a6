import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { helperArgv, run, startHelper } from '../../../src/util/subprocess.js';

test('run: stdout back, input on stdin, a failure names the program, its status and last stderr line', async () => {
  assert.equal(await run(['sh', '-c', 'cat; echo err >&2'], { input: 'in\n' }), 'in\n');
  await assert.rejects(run(['sh', '-c', 'echo first >&2; echo "no route" >&2; exit 2'], { errorCode: 'NETWORK' }), {
    code: 'NETWORK',
    message: 'sh exited with status 2: no route',
  });
  await assert.rejects(run(['/nonexistent/tool'], { errorCode: 'NETWORK' }), {
    code: 'NETWORK',
    message: /^Could not run \/nonexistent\/tool: .*ENOENT/,
  });
});

test('run: a program that outlives its timeout is killed and reported as such', async () => {
  const started = performance.now();
  await assert.rejects(run(['sleep', '30'], { timeoutMs: 200 }), { message: 'sleep did not finish within 0.2 s.' });
  assert.ok(performance.now() - started < 20_000, 'killed, not waited for');
});

test('run: stdout into a file, and inherited descriptors from fd 3 on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-subprocess-'));
  try {
    const fd = openSync(join(dir, 'inherited'), 'w');
    assert.equal(
      await run(['sh', '-c', 'echo via-fd3 >&3; echo out'], { inheritFds: [fd], stdoutPath: join(dir, 'out') }),
      '',
    );
    assert.equal(readFileSync(join(dir, 'inherited'), 'utf8'), 'via-fd3\n');
    assert.equal(readFileSync(join(dir, 'out'), 'utf8'), 'out\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('startHelper: the helper runs in its own process group and dies with the process that started it', async () => {
  assert.deepEqual(helperArgv(['pasta'], '/run/netns/x').slice(-4), ['nsenter', '--net=/run/netns/x', '--', 'pasta']);
  // A parent that starts a helper and is then SIGKILLed: the helper must not outlive it.
  const script = `
    import { startHelper } from ${JSON.stringify(new URL('../../../src/util/subprocess.ts', import.meta.url).href)};
    const helper = await startHelper(['sleep', '300'], { what: 'sleep', errorCode: 'INTERNAL' });
    console.log(helper.pid);
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = await new Promise<number>((resolve, reject) => {
    parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    parent.once('exit', () => reject(new Error('the parent exited before starting its helper')));
  });
  parent.kill('SIGKILL');
  assert.ok(pid > 0, 'helper pid printed');
  const deadline = Date.now() + 5_000;
  let alive = true;
  while (alive && Date.now() < deadline) {
    try {
      process.kill(pid, 0);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } catch {
      alive = false;
    }
  }
  assert.equal(alive, false, 'the helper died with its parent');
  const own = await startHelper(['sleep', '30'], { what: 'sleep', errorCode: 'INTERNAL' });
  assert.equal(
    execFileSync('ps', ['-o', 'pgid=', '-p', String(own.pid)], { encoding: 'utf8' }).trim(),
    String(own.pid),
  );
  own.child.kill('SIGKILL');
  assert.equal((await own.exited).signal, 'SIGKILL');
});
