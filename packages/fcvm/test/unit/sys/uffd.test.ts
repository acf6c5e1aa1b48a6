/**
 * The userfaultfd bindings against the kernel, in one process (the VMM and handler roles together):
 * a worker thread reads a registered region and blocks on its faults while this thread serves them
 * with UFFDIO_COPY and UFFDIO_ZEROPAGE, decoding each uffd_msg.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { EEXIST } from '../../../src/sys/errno.js';
import { bufferAddress, closeFd, PollSet, readFd } from '../../../src/sys/fd.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, mmap, munmap, PROT_READ, PROT_WRITE } from '../../../src/sys/mman.js';
import {
  createUserfaultfd,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_MSG_SIZE,
  UFFDIO_COPY,
  UffdOperations,
  uffdApi,
  uffdFaultAddress,
  uffdMessageEvent,
  uffdRegister,
} from '../../../src/sys/uffd.js';

const PAGE = 4096;
const PAGES = 16;

test('userfaultfd: API, REGISTER, fault messages, COPY, ZEROPAGE and EEXIST', async (t) => {
  const uffd = createUserfaultfd();
  t.after(() => closeFd(uffd));
  const features = uffdApi(uffd, UFFD_FEATURE_EVENT_REMOVE);
  assert.ok((features & UFFD_FEATURE_EVENT_REMOVE) !== 0);
  const region = mmap(PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  t.after(() => munmap(region, PAGES * PAGE));
  const ioctls = uffdRegister(uffd, region, PAGES * PAGE);
  assert.ok(ioctls & (1 << (UFFDIO_COPY & 0xff)), 'COPY is allowed on the range');

  // The reader: a plain worker that copies the whole region out (blocking on every missing page).
  const koffiPath = createRequire(import.meta.url).resolve('koffi');
  const reader = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const koffi = require(${JSON.stringify(koffiPath)});
     const memcpy = koffi.load('libc.so.6').func('intptr_t memcpy(intptr_t dst, intptr_t src, size_t n)');
     const copy = Buffer.alloc(workerData.length);
     memcpy(Number(koffi.address(copy)), workerData.region, workerData.length);
     parentPort.postMessage(copy);`,
    { eval: true, workerData: { region, length: PAGES * PAGE } },
  );
  const copied = new Promise<Buffer>((resolve, reject) => {
    reader.once('message', (data: Uint8Array) => resolve(Buffer.from(data)));
    reader.once('error', reject);
  });

  const ops = new UffdOperations(uffd);
  const source = Buffer.alloc(PAGE);
  const events = Buffer.alloc(64 * UFFD_MSG_SIZE);
  const polls = new PollSet([uffd]);
  const served = new Set<number>();
  while (served.size < PAGES) {
    assert.ok(polls.wait(10_000) > 0, 'a fault arrives');
    const n = readFd(uffd, events);
    if (n < 0) continue;
    for (let i = 0; i < n / UFFD_MSG_SIZE; i++) {
      assert.equal(uffdMessageEvent(events, i), UFFD_EVENT_PAGEFAULT);
      const address = uffdFaultAddress(events, i);
      const index = (address - region) / PAGE;
      assert.ok(Number.isInteger(index) && index >= 0 && index < PAGES, `fault at a page of the region: ${address}`);
      // Odd pages zero-filled, even pages copied with their index in every byte.
      if (index % 2 === 1) assert.equal(ops.zeroPage(address, PAGE), 0);
      else {
        source.fill(index + 1);
        assert.equal(ops.copy(address, bufferAddress(source), PAGE), 0);
        assert.equal(ops.lastCopied(), PAGE);
      }
      served.add(index);
    }
  }
  const data = await copied;
  for (let index = 0; index < PAGES; index++) {
    const page = data.subarray(index * PAGE, (index + 1) * PAGE);
    assert.ok(
      page.every((byte) => byte === (index % 2 === 1 ? 0 : index + 1)),
      `content of page ${index}`,
    );
  }
  assert.equal(ops.copy(region, bufferAddress(source), PAGE), EEXIST, 'a second copy to a present page is EEXIST');
  assert.equal(ops.wake(region, PAGE), 0);
  await reader.terminate();
});
