/**
 * The VM registry: `state/<vm_id>.json`, one record per fcvm process.
 *
 * - Writes are atomic (temp file in the same directory, fsync, rename) and happen under
 *   `state/registry.lock` (flock: released by the kernel if the holder dies, even by SIGKILL).
 * - Readers never take the lock: rename makes every file either the old or the new record.
 * - A record whose process is gone (or whose PID now belongs to another process: start times
 *   differ) is stale. `sweep()` removes stale records and hands them to the caller, which releases
 *   what the dead owner left (VM dirs, namespaces, ...).
 * - Saving a record removes any other record that claims the same live process (PID reuse).
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { errnoCode, FcvmError } from '../errors.js';
import { log } from '../log.js';
import { lockFile } from '../sys/flock.js';
import { isSameProcessAlive, processStartTime } from '../util/proc.js';
import { type VmRecord, type VmRecordInput, VmRecordSchema } from './record.js';

const RECORD_SUFFIX = '.json';

export class Registry {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = stateDir;
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  }

  private recordPath(vmId: string): string {
    return join(this.dir, `${vmId}${RECORD_SUFFIX}`);
  }

  /** Runs `fn` while holding the registry lock. */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    const lock = await lockFile(join(this.dir, 'registry.lock'));
    try {
      return await fn();
    } finally {
      lock.release();
    }
  }

  /** Creates or replaces a record; stamps `last_updated` (and `pid_start_time` if missing). */
  async save(input: VmRecordInput): Promise<VmRecord> {
    const now = new Date().toISOString();
    const record = VmRecordSchema.parse({
      ...input,
      created_at: input.created_at ?? now,
      last_updated: now,
      pid_start_time: input.pid_start_time ?? processStartTime(input.pid) ?? null,
    });
    await this.withLock(() => {
      for (const other of this.readAll()) {
        if (other.vm_id !== record.vm_id && other.pid === record.pid) this.removeFile(other.vm_id);
      }
      this.writeAtomic(record);
    });
    return record;
  }

  /** Read-modify-write of one record under the lock. Returns undefined if it no longer exists. */
  async update(vmId: string, change: (record: VmRecord) => VmRecordInput): Promise<VmRecord | undefined> {
    return this.withLock(() => {
      const current = this.read(vmId);
      if (!current) return undefined;
      const next = VmRecordSchema.parse({ ...change(current), last_updated: new Date().toISOString() });
      this.writeAtomic(next);
      return next;
    });
  }

  async remove(vmId: string): Promise<void> {
    await this.withLock(() => this.removeFile(vmId));
  }

  read(vmId: string): VmRecord | undefined {
    let text: string;
    try {
      text = readFileSync(this.recordPath(vmId), 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    return this.parse(text, vmId);
  }

  /** All readable records, live or not, sorted by creation time. */
  readAll(): VmRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const records: VmRecord[] = [];
    for (const name of names) {
      if (!name.endsWith(RECORD_SUFFIX)) continue;
      const record = this.read(name.slice(0, -RECORD_SUFFIX.length));
      if (record) records.push(record);
    }
    return records.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.vm_id.localeCompare(b.vm_id));
  }

  /** Records whose owning process is alive. */
  live(): VmRecord[] {
    return this.readAll().filter(isRecordLive);
  }

  /** Removes the records of dead owners and returns them, so the caller can release their leftovers. */
  async sweep(): Promise<VmRecord[]> {
    return this.withLock(() => {
      const stale = this.readAll().filter((record) => !isRecordLive(record));
      for (const record of stale) this.removeFile(record.vm_id);
      this.removeOrphanTempFiles();
      if (stale.length > 0) log.debug(`registry: swept ${stale.length} stale record(s)`);
      return stale;
    });
  }

  findByName(name: string): VmRecord[] {
    return this.live().filter((record) => record.name === name);
  }

  findByPid(pid: number): VmRecord | undefined {
    return this.live().find((record) => record.pid === pid);
  }

  private parse(text: string, vmId: string): VmRecord | undefined {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      log.warn(`registry: ignoring unreadable record ${vmId}${RECORD_SUFFIX}`);
      return undefined;
    }
    const result = VmRecordSchema.safeParse(raw);
    if (!result.success) {
      log.warn(`registry: ignoring invalid record ${vmId}${RECORD_SUFFIX}: ${result.error.issues[0]?.message}`);
      return undefined;
    }
    return result.data;
  }

  private writeAtomic(record: VmRecord): void {
    const target = this.recordPath(record.vm_id);
    const temp = `${target}.${process.pid}.tmp`;
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(record, null, 2)}\n`);
      fsyncSync(fd);
    } catch (err) {
      rmSync(temp, { force: true });
      const full = errnoCode(err) === 'ENOSPC';
      throw new FcvmError(
        'STATE',
        full
          ? `The data directory ${this.dir} is full: could not write the registry record of ${record.vm_id}; free some space.`
          : `Could not write the registry record ${target}: ${(err as Error).message}.`,
        { cause: err },
      );
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(temp, target);
    } catch (err) {
      rmSync(temp, { force: true });
      throw new FcvmError('STATE', `Could not write the registry record ${target}.`, { cause: err });
    }
  }

  /** Temp files of writers that died between write and rename. */
  private removeOrphanTempFiles(): void {
    for (const name of readdirSync(this.dir)) {
      const match = /\.(\d+)\.tmp$/.exec(name);
      if (match && !isSameProcessAlive(Number(match[1]))) rmSync(join(this.dir, name), { force: true });
    }
  }

  private removeFile(vmId: string): void {
    rmSync(this.recordPath(vmId), { force: true });
  }
}

export function isRecordLive(record: VmRecord): boolean {
  return isSameProcessAlive(record.pid, record.pid_start_time ?? undefined);
}
