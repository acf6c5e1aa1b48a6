/**
 * `fcvm snapshot serve` end to end through the CLI (the ./fcvm wrapper, i.e. the bundle and its
 * worker bundle): PID on stdout, registry record with per-clone stats in `fcvm snapshot ls --json`,
 * Ctrl-C confirmation while clones live, and nothing left behind after SIGTERM.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { newVmId } from '../../../src/state/record.js';
import { Registry } from '../../../src/state/registry.js';
import { buildClient, runClient, startHeldClient } from '../../support/uffd/client.js';

const run = promisify(execFile);
const FCVM = new URL('../../../../../fcvm', import.meta.url).pathname;
const MiB = 1024 * 1024;

let client: string;
let disposeClient: () => void;
let dataDir: string;
let memory: string;

before(async () => {
  ({ client, dispose: disposeClient } = await buildClient());
  dataDir = mkdtempSync(join(tmpdir(), 'fcvm-serve-cli-'));
  mkdirSync(join(dataDir, 'snapshots', 'warm'), { recursive: true });
  memory = join(dataDir, 'snapshots', 'warm', 'memory.bin');
  writeFileSync(memory, randomBytes(4 * MiB));
  // Build once up front so the servers below start quickly.
  await run(FCVM, ['--version'], { env: { ...process.env, FCVM_DATA_DIR: dataDir } });
});
after(() => {
  disposeClient();
  rmSync(dataDir, { recursive: true, force: true });
});

interface ServeProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly pid: number;
  readonly socket: string;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

async function startServe(t: { after(fn: () => void): void }): Promise<ServeProcess> {
  const child = spawn(FCVM, ['snapshot', 'serve', 'warm'], {
    env: { ...process.env, FCVM_DATA_DIR: dataDir, FCVM_LOG: 'info' },
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const firstLine = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('\n')) resolve(stdout.split('\n')[0]!);
    });
    void exited.then((code) => reject(new Error(`fcvm snapshot serve exited (${code}): ${stderr}`)));
  });
  const pid = Number(firstLine);
  assert.equal(pid, child.pid, 'the first line of stdout is the PID');
  const socket = join(dataDir, `uffd-warm-${pid}.sock`);
  return { child, pid, socket, stderr: () => stderr, exited };
}

async function serveRecords(): Promise<Array<Record<string, unknown>>> {
  const { stdout } = await run(FCVM, ['snapshot', 'ls', '--json'], { env: { ...process.env, FCVM_DATA_DIR: dataDir } });
  return JSON.parse(stdout) as Array<Record<string, unknown>>;
}

interface ListedClone {
  peer_pid: number;
  state: string;
  faults: number;
  bytes: number;
  errors: number;
}

async function listedClones(pid: number): Promise<ListedClone[]> {
  const record = (await serveRecords()).find((r) => r.pid === pid);
  assert.ok(record, `serve process ${pid} is listed`);
  return (record.serve as { clones: ListedClone[] }).clones;
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

function countEntries(path: string): number {
  return readdirSync(path).length;
}

describe('fcvm snapshot serve', () => {
  test('a missing snapshot is NOT_FOUND (exit 3) with a clear sentence', async () => {
    const result = await run(FCVM, ['snapshot', 'serve', 'nothing-here'], {
      env: { ...process.env, FCVM_DATA_DIR: dataDir },
    }).then(
      () => assert.fail('should fail'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(result.code, 3);
    assert.match(result.stderr, /Snapshot 'nothing-here' was not found/);
  });

  test('a data directory too long for a Unix socket path fails with a clear sentence (exit 2)', async () => {
    const longRoot = join(dataDir, 'a-data-directory-whose-path-is-far-too-long-to-hold-a-unix-socket-name-x');
    mkdirSync(join(longRoot, 'snapshots', 'warm'), { recursive: true });
    writeFileSync(join(longRoot, 'snapshots', 'warm', 'memory.bin'), randomBytes(4096));
    const result = await run(FCVM, ['snapshot', 'serve', 'warm'], {
      env: { ...process.env, FCVM_DATA_DIR: longRoot },
    }).then(
      () => assert.fail('should fail'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(result.code, 2);
    assert.match(result.stderr, /a Unix socket path holds at most 107/);
    const records = readdirSync(join(longRoot, 'state')).filter((name) => name.endsWith('.json'));
    assert.deepEqual(records, [], 'no record is left');
  });

  test('serves clones, shows their stats in snapshot ls --json, and leaves nothing after SIGTERM', async (t) => {
    const serve = await startServe(t);
    assert.ok(existsSync(serve.socket));
    await sleep(300);
    const fdsBefore = countEntries(`/proc/${serve.pid}/fd`);
    const threadsBefore = countEntries(`/proc/${serve.pid}/task`);

    const options = { socket: serve.socket, memory, regions: [4 * MiB] };
    const held = startHeldClient(client, { ...options, touch: 'random' });
    const results = await Promise.all([
      runClient(client, { ...options, touch: 'threads', threads: 3 }),
      runClient(client, { ...options, touch: 'seq' }),
      held.ready,
    ]);
    assert.equal(results[0].code, 0, results[0].stderr);
    assert.equal(results[1].code, 0, results[1].stderr);

    const clones = await eventually('the stats show three clones, one still served', async () => {
      const listed = await listedClones(serve.pid);
      const done = listed.length === 3 && listed.filter((c) => c.state === 'ended').length === 2;
      return done && listed.every((c) => c.faults >= 1024) ? listed : undefined;
    });
    const live = clones.find((c) => c.peer_pid === held.pid);
    assert.equal(live?.state, 'serving');
    assert.equal(live?.bytes, 4 * MiB);
    assert.ok(clones.every((c) => c.errors === 0));

    // Ctrl-C while a clone lives only warns.
    serve.child.kill('SIGINT');
    await eventually('the warning', async () => (/press Ctrl-C again/.test(serve.stderr()) ? true : undefined));
    await sleep(300);
    assert.equal(serve.child.exitCode, null, 'one Ctrl-C with a live clone does not stop the server');

    assert.equal(await held.release(), 0);
    await eventually('the last clone ended', async () => {
      const listed = await listedClones(serve.pid);
      return listed.every((c) => c.state === 'ended') ? true : undefined;
    });
    await eventually('descriptors and threads back to where they were', async () =>
      countEntries(`/proc/${serve.pid}/fd`) === fdsBefore && countEntries(`/proc/${serve.pid}/task`) === threadsBefore
        ? true
        : undefined,
    );

    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
    assert.equal(existsSync(serve.socket), false, 'the socket is removed');
    assert.equal(existsSync(`/proc/${serve.pid}`), false, 'the process is gone');
    assert.deepEqual(
      readdirSync(join(dataDir, 'state')).filter((name) => name.endsWith('.json')),
      [],
      'the record is removed',
    );
    assert.deepEqual(await serveRecords(), []);
  });

  test('shutdown asks the clones registered against this server to stop', async (t) => {
    const serve = await startServe(t);
    // Stand-ins for `fcvm snapshot run --pid` processes: one of ours, one of another server.
    const ours = spawn('sleep', ['30']);
    const theirs = spawn('sleep', ['30']);
    t.after(() => {
      ours.kill('SIGKILL');
      theirs.kill('SIGKILL');
    });
    const registry = new Registry(join(dataDir, 'state'));
    const now = new Date().toISOString();
    for (const [child, servePid] of [
      [ours, serve.pid],
      [theirs, serve.pid + 100_000],
    ] as const) {
      await registry.save({
        vm_id: newVmId(),
        pid: child.pid!,
        status: 'running',
        created_at: now,
        last_updated: now,
        config: { process_type: 'clone', serve_pid: servePid },
      });
    }
    const oursEnded = new Promise<NodeJS.Signals | null>((resolve) =>
      ours.on('exit', (_code, signal) => resolve(signal)),
    );
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
    assert.equal(await oursEnded, 'SIGTERM');
    assert.equal(theirs.exitCode, null, "another server's clone is left alone");
    for (const record of registry.readAll()) await registry.remove(record.vm_id);
  });

  test('a server killed by SIGKILL leaves a socket and a record that the next snapshot ls removes', async (t) => {
    const serve = await startServe(t);
    serve.child.kill('SIGKILL');
    await serve.exited;
    assert.equal(existsSync(serve.socket), true);
    assert.deepEqual(await serveRecords(), []);
    assert.equal(existsSync(serve.socket), false);
  });

  test('two Ctrl-C within 3 s stop a server that still has a clone; one Ctrl-C stops an idle one', async (t) => {
    const serve = await startServe(t);
    const held = startHeldClient(client, { socket: serve.socket, memory, regions: [4 * MiB] });
    t.after(() => void held.release());
    await held.ready;
    serve.child.kill('SIGINT');
    await eventually('the warning', async () => (/press Ctrl-C again/.test(serve.stderr()) ? true : undefined));
    serve.child.kill('SIGINT');
    assert.equal(await serve.exited, 0);
    assert.equal(existsSync(serve.socket), false);
    await held.release();

    const idle = await startServe(t);
    idle.child.kill('SIGINT');
    assert.equal(await idle.exited, 0);
    assert.equal(existsSync(idle.socket), false);
    assert.deepEqual(await serveRecords(), []);
  });
});
