/**
 * `npm run bench:uffd`: how fast our memory server serves page faults, next to a minimal C handler
 * with the same loop, measured with the same Firecracker-like client in the same run.
 *
 * The client touches every 4 KiB page of a 64 MiB region once, in order, and times each touch
 * (one fault round trip: fault -> server wakes -> UFFDIO_COPY -> client resumes). Rounds alternate
 * between the two servers so drift on a shared machine hits both. A second part runs several
 * clients at once against our server to show that clones do not starve each other.
 * Prints numbers only; not a test.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { MemoryServer } from '../src/uffd/memory-server.js';
import { type ClientReport, compileC, runClient } from '../test/support/uffd/client.js';

const MiB = 1024 * 1024;
const REGION = 64 * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONCURRENCY = [1, 2, 4];

interface Summary {
  faultsPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
}

/** The benchmark's output is its result: plain lines on stdout. */
function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function summarize(reports: ClientReport[]): Summary {
  return {
    faultsPerSecond: median(reports.map((r) => r.pages / (r.elapsed_ns / 1e9))),
    p50: median(reports.map((r) => r.p50_ns!)) / 1000,
    p90: median(reports.map((r) => r.p90_ns!)) / 1000,
    p99: median(reports.map((r) => r.p99_ns!)) / 1000,
  };
}

async function touchAll(client: string, socket: string, memory: string): Promise<ClientReport> {
  const result = await runClient(client, { socket, memory, regions: [REGION], touch: 'seq', latency: true });
  if (result.code !== 0 || !result.report) throw new Error(`the client failed: ${result.stderr}`);
  return result.report;
}

async function startCHandler(binary: string, socket: string, memory: string) {
  const child = spawn(binary, [socket, memory], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    lines.once('line', () => resolve());
    child.once('exit', (code) => reject(new Error(`the C handler exited with ${code}`)));
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('close', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function row(name: string, s: Summary): string {
  const cells = [
    name.padEnd(22),
    Math.round(s.faultsPerSecond).toString().padStart(10),
    s.p50.toFixed(1).padStart(8),
    s.p90.toFixed(1).padStart(8),
    s.p99.toFixed(1).padStart(8),
  ];
  return cells.join(' ');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fcvm-bench-uffd-'));
  try {
    const [client, cHandler] = await Promise.all([compileC('fc-like-client', dir), compileC('minimal-c-handler', dir)]);
    const memory = join(dir, 'memory.bin');
    writeFileSync(memory, randomBytes(REGION));

    const cSocket = join(dir, 'c.sock');
    const ourSocket = join(dir, 'fcvm.sock');
    const c = await startCHandler(cHandler, cSocket, memory);
    const ours = await MemoryServer.start({ socketPath: ourSocket, memoryFile: memory });
    const cReports: ClientReport[] = [];
    const ourReports: ClientReport[] = [];
    try {
      // One warm-up each (page cache, CPU frequency), then alternating rounds.
      await touchAll(client, cSocket, memory);
      await touchAll(client, ourSocket, memory);
      for (let round = 0; round < ROUNDS; round++) {
        cReports.push(await touchAll(client, cSocket, memory));
        ourReports.push(await touchAll(client, ourSocket, memory));
      }
    } finally {
      await c.stop();
    }

    const pages = REGION / 4096;
    print(`UFFD fault service: ${pages} faults of 4 KiB per run, median of ${ROUNDS} runs, one client`);
    print(
      `${'server'.padEnd(22)} ${'faults/s'.padStart(10)} ${'p50 us'.padStart(8)} ${'p90 us'.padStart(8)} ${'p99 us'.padStart(8)}`,
    );
    const cSummary = summarize(cReports);
    const ourSummary = summarize(ourReports);
    print(row('minimal C handler', cSummary));
    print(row('fcvm (Node + koffi)', ourSummary));
    print(
      `ratio fcvm/C: throughput ${(ourSummary.faultsPerSecond / cSummary.faultsPerSecond).toFixed(2)}x, ` +
        `p50 latency ${(ourSummary.p50 / cSummary.p50).toFixed(2)}x (+${(ourSummary.p50 - cSummary.p50).toFixed(1)} us per fault)`,
    );

    print(`\nConcurrent clones against fcvm (one worker thread each), ${pages} faults per clone:`);
    print(
      `${'clones'.padEnd(8)} ${'total faults/s'.padStart(15)} ${'p50 us (median clone)'.padStart(22)} ${'p99 us (worst clone)'.padStart(21)}`,
    );
    try {
      for (const count of CONCURRENCY) {
        const started = process.hrtime.bigint();
        const reports = await Promise.all(Array.from({ length: count }, () => touchAll(client, ourSocket, memory)));
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const p50 = median(reports.map((r) => r.p50_ns!)) / 1000;
        const worstP99 = Math.max(...reports.map((r) => r.p99_ns!)) / 1000;
        print(
          `${String(count).padEnd(8)} ${Math.round((count * pages) / seconds)
            .toString()
            .padStart(15)} ${p50.toFixed(1).padStart(22)} ${worstP99.toFixed(1).padStart(21)}`,
        );
      }
    } finally {
      await ours.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
