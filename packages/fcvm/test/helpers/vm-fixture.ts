/**
 * What hypervisor VM tests share: waiting on console output, finding leftovers, a network namespace
 * with taps, and a registry of started VMs that the test's `after` hook stops whatever happened.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { VmHandle } from '../../src/hypervisor/types.js';

const execFileAsync = promisify(execFile);

/** Polls `file` until `pattern` matches its text; returns the match. */
export async function waitForConsole(file: string, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const match = text.match(pattern);
    if (match !== null) return match;
    if (Date.now() > deadline) {
      throw new Error(
        `console ${file} never matched ${pattern} in ${timeoutMs} ms; it ends with:\n${text.slice(-800)}`,
      );
    }
    await sleep(100);
  }
}

/** The numbers of all `TINY_COUNT n` lines printed so far. */
export async function countsIn(file: string): Promise<number[]> {
  const text = await readFile(file, 'utf8');
  return [...text.matchAll(/^TINY_COUNT (\d+)\r?$/gm)].map((match) => Number(match[1]));
}

/** Waits until the console shows a counter above `above`; returns it. */
export async function waitForCountAbove(file: string, above: number, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await countsIn(file).catch(() => []);
    const latest = counts.at(-1);
    if (latest !== undefined && latest > above) return latest;
    if (Date.now() > deadline) throw new Error(`console ${file} never counted above ${above} (last: ${latest})`);
    await sleep(100);
  }
}

export async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** PIDs of processes whose command line mentions `needle` (e.g. a test's temp dir). */
export async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

/** Unix sockets anywhere below `dir`. */
export async function socketsBelow(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isSocket()) found.push(path.join(entry.parentPath, entry.name));
  }
  return found;
}

/** The memory cgroup of `pid` as written in /proc/PID/cgroup (v1 `memory` line or the v2 line). */
export async function memoryCgroupOf(pid: number): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  const lines = text.trim().split('\n');
  const v1 = lines.find((line) => line.split(':')[1]?.split(',').includes('memory'));
  return (v1 ?? lines.find((line) => line.startsWith('0::')))?.split(':')[2];
}

/** A network namespace with tap devices, for VMs started inside it. */
export class TestNetns {
  private constructor(
    readonly name: string,
    readonly taps: readonly string[],
  ) {}

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  static async create(name: string, taps: readonly string[]): Promise<TestNetns> {
    await execFileAsync('ip', ['netns', 'add', name]);
    const netns = new TestNetns(name, taps);
    try {
      for (const tap of taps) {
        await execFileAsync('ip', ['-n', name, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
        await execFileAsync('ip', ['-n', name, 'link', 'set', tap, 'up']);
      }
    } catch (err) {
      await netns.remove();
      throw err;
    }
    return netns;
  }

  async remove(): Promise<void> {
    await execFileAsync('ip', ['netns', 'del', this.name]).catch((err: unknown) => {
      // Already gone is fine; anything else is a leak the test should report.
      if (!String(err).includes('No such file')) throw err;
    });
  }
}

/** Every VM a test started; `stopAll` ends them quickly (used in `after`, also after failures). */
export class VmRegistry {
  private readonly vms: VmHandle[] = [];

  add<T extends VmHandle>(vm: T): T {
    this.vms.push(vm);
    return vm;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.vms.map((vm) => vm.stop({ graceMs: 0 })));
  }
}

/** Whether `link` is a symlink that resolves (used to check /proc/PID/ns entries). */
export async function readlinkOrNull(link: string): Promise<string | null> {
  return readlink(link).catch(() => null);
}
