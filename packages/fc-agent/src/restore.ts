/**
 * What the agent does when a hello shows that the VM was restored from a snapshot, before it
 * serves the new session (order matters: the clock first, before anything talks to the network):
 *   1. clock: step to the host's time, then `chronyc makestep`;
 *   2. stale TCP: destroy established connections to the outside world, whose peers know nothing of
 *      this clone, but keep loopback and the gateway side (10.0.2.0/24: pasta gateway, forwarded
 *      ports) - the filter is the reference's, unchanged;
 *   3. neighbours: flush the ARP cache, then announce our own address with a gratuitous ARP so the
 *      bridge / pasta learn the clone's new port at once.
 * Each step is logged and a failure does not stop the next one: a half-restored network is better
 * than none, and the host sees the log on the console.
 */
import type { NetworkPlan } from '@fcvm/protocol';
import { resyncAfterRestore } from './clock.js';
import { runCommand } from './command.js';
import { describeError, logLine } from './log.js';
import { ownAddress } from './network.js';

export const STALE_CONNECTION_FILTER = '( ! dst 127.0.0.0/8 and ! dst [::1] and ! dst 10.0.2.0/24 )';

export function killStaleConnectionsArgv(): string[] {
  return ['ss', '-K', 'state', 'established', STALE_CONNECTION_FILTER];
}

export function announceArgvs(network: NetworkPlan): string[][] {
  if (network.kind === 'none') return [];
  const argvs = [['ip', 'neigh', 'flush', 'all']];
  const address = ownAddress(network);
  if (address !== null) argvs.push(['arping', '-c', '1', '-U', '-I', network.device, address]);
  return argvs;
}

export interface RestoreContext {
  readonly hostTimeMs: number;
  /** null when no plan arrived before the snapshot: then only the clock is fixed. */
  readonly network: NetworkPlan | null;
}

export async function runRestoreSequence(context: RestoreContext): Promise<void> {
  const started = Date.now();
  await step('clock', () => resyncAfterRestore(context.hostTimeMs));
  if (context.network !== null && context.network.kind !== 'none') {
    await step('stale connections', () => runCommand(killStaleConnectionsArgv()));
    for (const argv of announceArgvs(context.network)) await step(argv.slice(0, 3).join(' '), () => runCommand(argv));
  }
  logLine(`restore complete in ${Date.now() - started} ms`);
}

async function step(name: string, action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (err) {
    logLine(`restore step ${name} failed: ${describeError(err)}`);
  }
}
