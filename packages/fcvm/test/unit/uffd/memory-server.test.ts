/**
 * The memory server against the real kernel: a C client does exactly what Firecracker does
 * (its own userfaultfd over private anonymous memory, one handshake message with SCM_RIGHTS, the
 * socket kept open), touches pages, and checks every byte against the memory file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CloneInfo, MemoryServer } from '../../../src/uffd/memory-server.js';
import { buildClient, type ClientOptions, runClient, startHeldClient } from '../../support/uffd/client.js';
import { reserveHugePages } from '../../support/uffd/hugepages.js';

const MiB = 1024 * 1024;
const PAGE = 4096;

let dir: string;
let client: string;
let dispose: () => void;

before(async () => {
  ({ dir, client, dispose } = await buildClient());
});
after(() => dispose());

/** What this process's descriptors point at ('socket:[...]', 'anon_inode:[userfaultfd]', paths, ...). */
function openFds(): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      targets.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // The descriptor readdir itself used is gone by the time it is read.
    }
  }
  return targets;
}

function userfaultfds(): number {
  return openFds().filter((target) => target === 'anon_inode:[userfaultfd]').length;
}

/** A server over a random memory file of `size` bytes; stopped after the test, also on failure. */
async function startServer(t: { after(fn: () => Promise<void>): void }, name: string, size: number) {
  const memory = join(dir, `${name}.bin`);
  writeFileSync(memory, randomBytes(size));
  const socket = join(dir, `${name}.sock`);
  const server = await MemoryServer.start({ socketPath: socket, memoryFile: memory, handshakeTimeoutMs: 2000 });
  t.after(() => server.stop());
  const base: Pick<ClientOptions, 'socket' | 'memory'> = { socket, memory };
  return { server, memory, socket, base };
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

function allEnded(server: MemoryServer, expected: number): boolean {
  const clones = server.clones();
  return clones.length === expected && clones.every((c) => c.state === 'ended' || c.state === 'failed');
}

describe('memory server', () => {
  test('serves sequential, random and multi-threaded touches byte for byte, across two regions', async (t) => {
    // The file ends inside the second region (not on a page boundary): the rest must read as zeros.
    const fileSize = 6 * MiB + 1234;
    const { server, base } = await startServer(t, 'modes', fileSize);
    const regions = [4 * MiB, 4 * MiB];
    for (const touch of ['seq', 'random', 'threads'] as const) {
      const result = await runClient(client, { ...base, regions, touch, threads: 4 });
      assert.equal(result.code, 0, `${touch}: ${result.stderr}`);
      assert.equal(result.report?.pages, (8 * MiB) / PAGE);
    }
    await until('all clones ended', () => allEnded(server, 3));
    for (const clone of server.clones()) {
      assert.equal(clone.state, 'ended');
      assert.equal(clone.errors, 0);
      // Every page was served exactly once or (threads racing on one page) more; zero pages past the file's end.
      assert.ok(clone.faults >= (8 * MiB) / PAGE, `faults ${clone.faults}`);
      assert.equal(clone.zero_pages, Math.floor((8 * MiB - fileSize) / PAGE));
      assert.equal(clone.bytes, 8 * MiB, 'each page is filled once; a racing second fault gets EEXIST');
      assert.equal(clone.regions.length, 2);
      assert.deepEqual(
        clone.regions.map((r) => r.offset),
        [0, 4 * MiB],
      );
    }
  });

  test('keeps serving a client that closes the socket after the handshake (Firecracker before 1.12)', async (t) => {
    const { server, base } = await startServer(t, 'oldfc', 4 * MiB);
    const held = startHeldClient(client, { ...base, regions: [4 * MiB], touch: 'random', closeSocket: true });
    await held.ready;
    assert.equal(server.clones()[0]?.state, 'serving', 'a closed socket alone does not end the clone');
    assert.equal(await held.release(), 0);
    await until('the clone ended once its process exited', () => allEnded(server, 1));
    assert.equal(server.clones()[0]?.state, 'ended');
  });

  test('pages given back (REMOVE events) read as zeros afterwards', async (t) => {
    const { server, base } = await startServer(t, 'remove', 4 * MiB);
    const result = await runClient(client, { ...base, regions: [4 * MiB], removeCheck: true });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.report?.removed_pages, (4 * MiB) / PAGE / 4);
    await until('the clone ended', () => allEnded(server, 1));
    const [clone] = server.clones() as [CloneInfo];
    assert.equal(clone.removes, 1);
    assert.equal(clone.zero_pages, (4 * MiB) / PAGE / 4);
  });

  test('serves several clients at once; one killed mid-way disturbs none; no descriptor leaks', async (t) => {
    const { server, base } = await startServer(t, 'many', 8 * MiB);
    await sleep(200);
    const fdsBefore = openFds();
    assert.equal(userfaultfds(), 0);
    const regions = [8 * MiB];
    const runs = [
      runClient(client, { ...base, regions, touch: 'random' }),
      runClient(client, { ...base, regions, touch: 'threads', threads: 3 }),
      runClient(client, { ...base, regions, touch: 'seq', dieAfter: 700 }),
      runClient(client, { ...base, regions, touch: 'threads', threads: 2, dieAfter: 900 }),
      runClient(client, { ...base, regions, touch: 'seq' }),
    ];
    const results = await Promise.all(runs);
    for (const index of [0, 1, 4]) assert.equal(results[index]!.code, 0, results[index]!.stderr);
    for (const index of [2, 3]) assert.equal(results[index]!.signal, 'SIGKILL');
    await until('all clones ended', () => allEnded(server, 5));
    const byPid = new Map(server.clones().map((c) => [c.peer_pid, c]));
    for (const result of results) {
      const clone = byPid.get(result.pid);
      assert.ok(clone, `clone of pid ${result.pid} is listed`);
      assert.equal(clone.state, 'ended', `pid ${result.pid}: ${clone.error}`);
    }
    assert.ok(byPid.get(results[2]!.pid)!.faults >= 700);
    // Worker threads get their own epoll/eventfd descriptors, so numbers and inodes move; kinds and counts must not.
    const kinds = (targets: string[]) => targets.map((target) => target.replace(/\[\d+\]/, '[]')).sort();
    await until('worker threads released their descriptors', () => openFds().length === fdsBefore.length, 5000).catch(
      () => assert.deepEqual(kinds(openFds()), kinds(fdsBefore)),
    );
    assert.equal(userfaultfds(), 0);
  });

  test('a client with a bad handshake fails alone (and is ended), the server keeps serving', async (t) => {
    const { server, base, socket } = await startServer(t, 'bad', 1 * MiB);
    // Regions that are not page-aligned: Firecracker never sends this, the server must refuse it.
    const bad = runClient(client, { ...base, regions: [1 * MiB], pageSize: 4097 });
    const good = runClient(client, { ...base, regions: [1 * MiB] });
    const [badResult, goodResult] = await Promise.all([bad, good]);
    assert.equal(goodResult.code, 0, goodResult.stderr);
    assert.notEqual(badResult.code, 0);
    await until('both clones ended', () => allEnded(server, 2));
    const failed = server.clones().find((c) => c.peer_pid === badResult.pid);
    assert.equal(failed?.state, 'failed');
    assert.match(failed?.error ?? '', /page size 4097/);
    assert.equal(badResult.signal, 'SIGKILL', 'a clone that handed over its userfaultfd but cannot be served is ended');
    const again = await runClient(client, { socket, memory: base.memory, regions: [1 * MiB], touch: 'random' });
    assert.equal(again.code, 0, again.stderr);
  });

  test('a peer that sends no descriptor, or nothing within the deadline, fails alone', async (t) => {
    const { server, base } = await startServer(t, 'nofd', 1 * MiB);
    // Node's net module cannot send SCM_RIGHTS: exactly the "JSON without a userfaultfd" case.
    const withoutFd = connect(base.socket);
    t.after(() => withoutFd.destroy());
    withoutFd.write('[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096}]');
    const silent = connect(base.socket);
    t.after(() => silent.destroy());
    await until('both connections failed', () => server.clones().filter((c) => c.state === 'failed').length === 2);
    const errors = server.clones().map((c) => c.error ?? '');
    assert.ok(
      errors.some((e) => /no userfaultfd/.test(e)),
      errors.join('; '),
    );
    assert.ok(
      errors.some((e) => /no complete handshake within 2000 ms/.test(e)),
      errors.join('; '),
    );
    // The peer here is this test process: that it is still running shows such peers are not killed.
    const good = await runClient(client, { ...base, regions: [1 * MiB] });
    assert.equal(good.code, 0, good.stderr);
  });

  test('serves 2 MiB hugetlb pages, including a partial last page and zero pages past the file', async (t) => {
    const reservation = reserveHugePages(8);
    if (!reservation.ok) {
      t.skip(reservation.reason);
      return;
    }
    t.after(() => reservation.restore());
    const fileSize = 5 * MiB + 12345;
    const { server, base } = await startServer(t, 'huge', fileSize);
    const regions = [4 * MiB, 4 * MiB];
    for (const touch of ['seq', 'threads'] as const) {
      const result = await runClient(client, { ...base, regions, pageSize: 2 * MiB, touch, threads: 3 });
      assert.equal(result.code, 0, `${touch}: ${result.stderr}`);
    }
    const removal = await runClient(client, { ...base, regions, pageSize: 2 * MiB, removeCheck: true });
    assert.equal(removal.code, 0, removal.stderr);
    await until('all clones ended', () => allEnded(server, 3));
    for (const clone of server.clones()) {
      assert.equal(clone.state, 'ended', clone.error ?? '');
      assert.equal(clone.regions[0]?.page_size, 2 * MiB);
      assert.ok(clone.zero_pages >= 1, 'the 2 MiB page past the end of the file is zeros');
    }
  });
});
