/**
 * Saving and loading VM state through QEMU's migration stream.
 *
 * Transport: a Unix socket in the VM directory, with fcvm copying between the socket and the file.
 * QEMU 7.2 has no `file:` URI, and its `exec:cat > FILE` route is racy: when the stream ends QEMU
 * closes the pipe and, if `cat` has not exited within a few milliseconds, sends it SIGTERM and then
 * SIGKILL (qio_channel_command_abort), which can cut the end off the file on a loaded host. With a
 * socket, the save is complete when QEMU reports it *and* fcvm has flushed the last byte; no shell
 * is involved, so paths need no quoting.
 *
 * With `x-ignore-shared`, RAM blocks mapped shared (our RAM file) are left out of the stream: the
 * file already holds them. Both sides must agree on the capability, because it changes the format.
 *
 * Gotcha: a stream saved from a paused VM restores into a paused VM, so the caller sends `cont`.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { FcvmError } from '../../errors.js';
import { poll } from '../../util/poll.js';
import type { QmpClient } from './qmp-client.js';

const migrateInfoSchema = z.object({ status: z.string().optional(), 'error-desc': z.string().optional() });
const statusSchema = z.object({ status: z.string(), running: z.boolean() });

export type RunState = z.infer<typeof statusSchema>;

export async function queryStatus(qmp: QmpClient): Promise<RunState> {
  return statusSchema.parse(await qmp.execute('query-status'));
}

export interface MigrationOptions {
  /** Leave shared RAM blocks (the RAM file) out of the stream. */
  readonly ignoreSharedRam: boolean;
  /** Where the stream's Unix socket is created (the VM directory). */
  readonly socketPath: string;
  readonly timeoutMs: number;
  /** Settles if QEMU exits: the migration then cannot finish. */
  readonly processExited: Promise<unknown>;
  readonly signal?: AbortSignal;
}

async function setIgnoreShared(qmp: QmpClient, enabled: boolean): Promise<void> {
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'x-ignore-shared', state: enabled }],
  });
}

/** Polls until `done` says so; rejects when QEMU exits, the deadline passes or the signal aborts. */
async function pollUntil(what: string, options: MigrationOptions, done: () => Promise<boolean>): Promise<void> {
  let exited = false;
  void options.processExited.then(() => {
    exited = true;
  });
  await poll(
    async () => {
      if (exited) throw new FcvmError('HYPERVISOR', `QEMU exited during ${what}.`);
      return (await done()) ? true : undefined;
    },
    {
      timeoutMs: options.timeoutMs,
      delayMs: 10,
      signal: options.signal,
      onTimeout: () =>
        new FcvmError('HYPERVISOR', `QEMU did not finish ${what} within ${Math.round(options.timeoutMs / 1000)} s.`),
    },
  );
}

/** Listens on `socketPath` and writes the first connection's bytes to `file`; settles once they are on disk. */
async function receiveIntoFile(
  socketPath: string,
  file: string,
): Promise<{ server: net.Server; written: Promise<void> }> {
  await rm(socketPath, { force: true });
  const server = net.createServer();
  const written = new Promise<void>((resolve, reject) => {
    server.once('connection', (socket) => {
      server.close();
      // The file was created (0600) by the caller; `r+` keeps its mode and truncation is not needed (it is empty).
      pipeline(socket, createWriteStream(file, { flags: 'r+' })).then(resolve, reject);
    });
    server.once('error', reject);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
    server.listen(socketPath);
  });
  return { server, written };
}

/** Writes the VM's state (devices, plus RAM unless `ignoreSharedRam`) to `file`, which must exist and be empty. */
export async function saveVmState(qmp: QmpClient, file: string, options: MigrationOptions): Promise<void> {
  await setIgnoreShared(qmp, options.ignoreSharedRam);
  // The default bandwidth cap (32 MiB/s) is for live migration over a network, not for a local file.
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1e12 });
  const { server, written } = await receiveIntoFile(options.socketPath, file);
  let fileState: 'writing' | 'written' | Error = 'writing';
  written.then(
    () => {
      fileState = 'written';
    },
    (err: unknown) => {
      fileState = err instanceof Error ? err : new Error(String(err));
    },
  );
  try {
    await qmp.execute('migrate', { uri: `unix:${options.socketPath}` });
    await pollUntil('saving the VM state', options, async () => {
      if (fileState instanceof Error) {
        throw new FcvmError('HYPERVISOR', `Could not write the VM state to ${file}: ${fileState.message}`, {
          cause: fileState,
        });
      }
      const info = migrateInfoSchema.parse(await qmp.execute('query-migrate'));
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw new FcvmError('HYPERVISOR', `QEMU could not save the VM state: ${info['error-desc'] ?? info.status}.`);
      }
      return info.status === 'completed' && fileState === 'written';
    });
  } finally {
    server.close();
    await rm(options.socketPath, { force: true });
  }
}

/** Loads a state saved by `saveVmState` into a QEMU started with `-incoming defer`; leaves it paused. */
export async function loadVmState(qmp: QmpClient, file: string, options: MigrationOptions): Promise<void> {
  await setIgnoreShared(qmp, options.ignoreSharedRam);
  await rm(options.socketPath, { force: true });
  // QEMU listens on the socket once this command returns.
  await qmp.execute('migrate-incoming', { uri: `unix:${options.socketPath}` });
  try {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const connection = net.createConnection(options.socketPath, () => resolve(connection));
      connection.once('error', reject);
    });
    let sendError: Error | undefined;
    pipeline(createReadStream(file), socket).catch((err: unknown) => {
      sendError = err instanceof Error ? err : new Error(String(err));
    });
    await pollUntil('loading the VM state', options, async () => {
      // Once QEMU has the whole stream it may close its end early; only a failure before that matters.
      if ((await queryStatus(qmp)).status !== 'inmigrate') return true;
      if (sendError !== undefined) {
        throw new FcvmError('HYPERVISOR', `Could not send the VM state ${file} to QEMU: ${sendError.message}`, {
          cause: sendError,
        });
      }
      return false;
    });
  } finally {
    await rm(options.socketPath, { force: true });
  }
}
