/**
 * `fcvm snapshot serve NAME` as a library call: checks the snapshot, starts the memory server on
 * `<data>/uffd-<name>-<pid>.sock` (the reference's name), registers the process in the VM registry
 * (process type serve) and refreshes the per-clone counters in its record about once a second.
 * `stop()` ends the clones registered against this server, stops serving, and removes the socket and
 * the record.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataDir } from '../data-dir.js';
import { errnoCode, FcvmError } from '../errors.js';
import { log } from '../log.js';
import { newVmId } from '../state/record.js';
import { isRecordLive, type Registry } from '../state/registry.js';
import { UNIX_PATH_MAX } from '../sys/unix-socket.js';
import { type CloneInfo, MemoryServer } from './memory-server.js';

export interface SnapshotServeOptions {
  readonly dataDir: DataDir;
  readonly registry: Registry;
  readonly snapshot: string;
  readonly statsIntervalMs?: number;
}

export interface SnapshotServe {
  readonly vmId: string;
  readonly socketPath: string;
  liveClones(): number;
  clones(): CloneInfo[];
  /** Idempotent; resolves once the socket, the record and every worker are gone. */
  stop(): Promise<void>;
}

export function memoryFilePath(dir: DataDir, snapshot: string): string {
  return join(dir.snapshotDir(snapshot), 'memory.bin');
}

export function serveSocketPath(dir: DataDir, snapshot: string, pid: number): string {
  return join(dir.root, `uffd-${snapshot}-${pid}.sock`);
}

/** The snapshot's memory file (it must exist) and this server's socket path (it must fit a Unix socket address). */
function servePaths(
  dataDir: SnapshotServeOptions['dataDir'],
  snapshot: string,
): { memoryFile: string; socketPath: string } {
  const memoryFile = memoryFilePath(dataDir, snapshot);
  if (!existsSync(memoryFile)) {
    throw new FcvmError(
      'NOT_FOUND',
      `Snapshot '${snapshot}' was not found: ${memoryFile} does not exist (create one with 'fcvm snapshot create').`,
    );
  }
  const socketPath = serveSocketPath(dataDir, snapshot, process.pid);
  const pathBytes = Buffer.byteLength(socketPath);
  if (pathBytes > UNIX_PATH_MAX) {
    throw new FcvmError(
      'CONFIG',
      `The memory server socket path ${socketPath} is ${pathBytes} bytes, but a Unix socket path holds at most ${UNIX_PATH_MAX}; use a shorter data directory (FCVM_DATA_DIR) or snapshot name.`,
    );
  }
  return { memoryFile, socketPath };
}

export async function startSnapshotServe(options: SnapshotServeOptions): Promise<SnapshotServe> {
  const { dataDir, registry, snapshot } = options;
  const { memoryFile, socketPath } = servePaths(dataDir, snapshot);
  // The name holds our PID, so a file already there was left by a dead server that had the same PID.
  rmSync(socketPath, { force: true });
  let server: MemoryServer;
  try {
    server = await MemoryServer.start({ socketPath, memoryFile });
  } catch (err) {
    throw new FcvmError('STATE', `Could not start the memory server for snapshot '${snapshot}' on ${socketPath}.`, {
      cause: err,
      context: { socketPath, memoryFile },
    });
  }

  const vmId = newVmId();
  const serveInfo = () => ({ socket_path: socketPath, memory_file: memoryFile, clones: server.clones() });
  try {
    await registry.save({
      vm_id: vmId,
      pid: process.pid,
      status: 'running',
      health_status: 'healthy',
      created_at: new Date().toISOString(),
      last_updated: new Date().toISOString(),
      config: { process_type: 'serve', snapshot_name: snapshot },
      serve: serveInfo(),
    });
  } catch (err) {
    await server.stop();
    throw err;
  }

  // One refresh at a time (a slow disk must not pile up registry writes), and only when a counter moved.
  let refreshing: Promise<void> = Promise.resolve();
  let lastWritten = JSON.stringify(serveInfo());
  const timer = setInterval(() => {
    refreshing = refreshing.then(async () => {
      const info = serveInfo();
      const text = JSON.stringify(info);
      if (text === lastWritten) return;
      try {
        await registry.update(vmId, (record) => ({ ...record, serve: info }));
        lastWritten = text;
      } catch (err) {
        log.warn(`memory server: could not refresh the registry record: ${(err as Error).message}`);
      }
    });
  }, options.statsIntervalMs ?? 1000);

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    clearInterval(timer);
    await refreshing;
    endRegisteredClones(registry, process.pid);
    await server.stop();
    await registry.remove(vmId);
  };
  return {
    vmId,
    socketPath,
    liveClones: () => server.liveClones(),
    clones: () => server.clones(),
    stop: () => {
      stopping ??= shutdown();
      return stopping;
    },
  };
}

/**
 * A clone whose memory server is gone hangs on its next missing page, so the clones that
 * `fcvm snapshot run --pid` started against this server are asked to stop (their fcvm tears the VM down).
 */
function endRegisteredClones(registry: Registry, servePid: number): void {
  for (const record of registry.readAll()) {
    if (record.config.process_type !== 'clone' || record.config.serve_pid !== servePid || !isRecordLive(record))
      continue;
    try {
      process.kill(record.pid, 'SIGTERM');
      log.info(`asked clone ${record.name ?? record.vm_id} (pid ${record.pid}) to stop`);
    } catch (err) {
      if (errnoCode(err) !== 'ESRCH') log.warn(`could not stop clone pid ${record.pid}: ${(err as Error).message}`);
    }
  }
}
