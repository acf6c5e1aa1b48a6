/**
 * What the agent does when a hello shows that the VM was restored from a snapshot (a clone), before
 * it serves the new session. Order matters: the clock first, before anything talks to the network.
 *   1. clock: step to the host's time, then `chronyc makestep` so chronyd agrees;
 *   2. RNG: mix host entropy into the CRNG and force a reseed (clones of one snapshot would
 *      otherwise share the snapshot's CRNG state and produce the same "random" bytes);
 *   3. identity: the clone's hostname;
 *   4. stale TCP: destroy established connections to the outside world, whose peers know nothing of
 *      this clone, but keep loopback, the gateway side (10.0.2.0/24: pasta gateway, forwarded ports)
 *      and the host-side IPv6 prefix fd00::/64 (the reference's filter missed it, its review found);
 *   5. neighbours: announce our own address with a gratuitous ARP so the bridge / pasta learn the
 *      clone's port at once; started, not awaited (arping waits for its interval).
 * Each step is timed and logged; a failure does not stop the next one (a half-restored guest is
 * better than none, and the host sees the log on the console). The last line is `restore complete`.
 */
import type { NetworkPlan, RestoreIdentity } from '@fcvm/protocol';
import { resyncAfterRestore } from './clock.js';
import { runCommand } from './command.js';
import { describeError, logLine } from './log.js';
import { ownAddress, setHostname } from './network.js';

export const STALE_CONNECTION_FILTER =
  '( ! dst 127.0.0.0/8 and ! dst [::1] and ! dst 10.0.2.0/24 and ! dst [fd00::/64] )';

export function killStaleConnectionsArgv(): string[] {
  return ['ss', '-K', 'state', 'established', STALE_CONNECTION_FILTER];
}

export function announceArgvs(network: NetworkPlan): string[][] {
  const address = ownAddress(network);
  if (network.kind === 'none' || address === null) return [];
  return [['arping', '-c', '1', '-U', '-I', network.device, address]];
}

/**
 * RNDADDENTROPY (_IOW('R', 3, int[2])) with the host's bytes credited, then RNDRESEEDCRNG (_IO('R', 7)).
 * The guest's Node has no ioctl() and the guest no compiler; perl-base is in every Debian and can.
 * The entropy arrives on stdin (hex) so it never shows in a process list.
 */
export const RESEED_SCRIPT = [
  'binmode STDIN; local $/; my $hex = <STDIN>; $hex =~ s/\\s+//g; my $b = pack("H*", $hex);',
  'open(my $f, ">", "/dev/urandom") or die "open /dev/urandom: $!\\n";',
  'ioctl($f, 0x40085203, pack("ii", 8 * length($b), length($b)) . $b) or die "RNDADDENTROPY: $!\\n";',
  'ioctl($f, 0x5207, 0) or die "RNDRESEEDCRNG: $!\\n";',
].join(' ');

export async function reseedRandom(entropyHex: string): Promise<void> {
  await runCommand(['perl', '-e', RESEED_SCRIPT], { input: entropyHex, timeoutMs: 10_000 });
}

export interface RestoreContext {
  readonly hostTimeMs: number;
  /** null when no plan arrived before the snapshot: then the network steps are skipped. */
  readonly network: NetworkPlan | null;
  /** Entropy and hostname from the host; null from an older host (then those steps are skipped). */
  readonly identity: RestoreIdentity | null;
}

/** Timings use the monotonic clock: the first step moves the wall clock. */
export async function runRestoreSequence(context: RestoreContext): Promise<void> {
  const started = performance.now();
  logLine('handling restore');
  await step('clock', () => resyncAfterRestore(context.hostTimeMs));
  const identity = context.identity;
  if (identity !== null) {
    await step('rng reseed', () => reseedRandom(identity.entropy));
    await step('hostname', () => setHostname(identity.hostname));
  } else {
    logLine('restore step rng reseed skipped: the host sent no entropy');
  }
  if (context.network !== null && context.network.kind !== 'none') {
    await step('stale connections', () => runCommand(killStaleConnectionsArgv()));
    for (const argv of announceArgvs(context.network)) {
      const announced = performance.now();
      runCommand(argv, { timeoutMs: 5_000 }).then(
        () => logLine(`restore step neighbour announcement done in ${Math.round(performance.now() - announced)} ms`),
        (err: unknown) => logLine(`restore step neighbour announcement failed: ${describeError(err)}`),
      );
      logLine('restore step neighbour announcement started');
    }
  }
  logLine(`restore complete in ${Math.round(performance.now() - started)} ms`);
}

async function step(name: string, action: () => Promise<unknown>): Promise<void> {
  const began = performance.now();
  const elapsed = (): number => Math.round(performance.now() - began);
  try {
    await action();
    logLine(`restore step ${name}: ${elapsed()} ms`);
  } catch (err) {
    logLine(`restore step ${name} failed after ${elapsed()} ms: ${describeError(err)}`);
  }
}
