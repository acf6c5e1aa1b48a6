/**
 * Saving and loading VM state through QEMU's migration stream. QEMU 7.2 has no `file:` migration
 * URI, so the stream goes through `exec:` (QEMU runs the command with /bin/sh); paths are quoted.
 *
 * With `x-ignore-shared`, RAM blocks mapped shared (our RAM file) are left out of the stream: the
 * file already holds them. Both sides must agree on the capability, because it changes the format.
 *
 * Gotcha: a stream saved from a paused VM restores into a paused VM, so the caller sends `cont`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { FcvmError } from '../../errors.js';
import { shellQuote } from './command-line.js';
import type { QmpClient } from './qmp-client.js';

const migrateInfoSchema = z.object({ status: z.string().optional(), 'error-desc': z.string().optional() });
const statusSchema = z.object({ status: z.string(), running: z.boolean() });

export type RunState = z.infer<typeof statusSchema>;

export async function queryStatus(qmp: QmpClient): Promise<RunState> {
  return statusSchema.parse(await qmp.execute('query-status'));
}

export interface MigrationWait {
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
async function pollUntil(what: string, wait: MigrationWait, done: () => Promise<boolean>): Promise<void> {
  let exited = false;
  void wait.processExited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + wait.timeoutMs;
  for (;;) {
    if (exited) throw new FcvmError('HYPERVISOR', `QEMU exited during ${what}.`);
    if (await done()) return;
    if (Date.now() >= deadline) {
      throw new FcvmError('HYPERVISOR', `QEMU did not finish ${what} within ${Math.round(wait.timeoutMs / 1000)} s.`);
    }
    await sleep(10, undefined, { signal: wait.signal });
  }
}

/** Writes the VM's state (devices, plus RAM unless `ignoreSharedRam`) to `path`. The VM must be paused. */
export async function saveVmState(
  qmp: QmpClient,
  path: string,
  options: { readonly ignoreSharedRam: boolean } & MigrationWait,
): Promise<void> {
  await setIgnoreShared(qmp, options.ignoreSharedRam);
  // The default bandwidth cap (32 MiB/s) is for live migration over a network, not for a local file.
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1e12 });
  await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(path)}` });
  await pollUntil('saving the VM state', options, async () => {
    const info = migrateInfoSchema.parse(await qmp.execute('query-migrate'));
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new FcvmError('HYPERVISOR', `QEMU could not save the VM state: ${info['error-desc'] ?? info.status}.`);
    }
    return info.status === 'completed';
  });
}

/** Loads a state saved by `saveVmState` into a QEMU started with `-incoming defer`; leaves it paused. */
export async function loadVmState(
  qmp: QmpClient,
  path: string,
  options: { readonly ignoreSharedRam: boolean } & MigrationWait,
): Promise<void> {
  await setIgnoreShared(qmp, options.ignoreSharedRam);
  await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(path)}` });
  // A failed incoming migration makes QEMU exit, which pollUntil reports.
  await pollUntil('loading the VM state', options, async () => (await queryStatus(qmp)).status !== 'inmigrate');
}
