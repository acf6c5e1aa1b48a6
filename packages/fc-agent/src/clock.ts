/**
 * Guest clock. At boot and after every restore the clock is stepped to the host's time first
 * (a restored clone wakes up at its snapshot's time). Then chronyd runs as root with
 * `makestep 1 -1` (step whenever the offset exceeds 1 s, any number of times) and the host's NTP
 * sources, added through chronyc because chrony's config parser rejects bare IPv6 addresses.
 * With no sources chronyd still runs, so `chronyc makestep` works after a restore.
 */
import { writeFile } from 'node:fs/promises';
import type { NtpSource } from '@fcvm/protocol';
import { runCommand } from './command.js';
import { describeError, logLine } from './log.js';

export const CHRONY_CONFIG_PATH = '/run/fcvm/chrony.conf';

/** `date` takes fractional seconds after `@`. */
export function setClockArgv(hostTimeMs: number): string[] {
  return ['date', '--utc', '--set', `@${(hostTimeMs / 1000).toFixed(3)}`];
}

export function chronyConfig(): string {
  return ['makestep 1 -1', 'driftfile /run/fcvm/chrony.drift', 'rtcsync', 'cmdport 0', ''].join('\n');
}

export function chronydArgv(): string[] {
  return ['chronyd', '-f', CHRONY_CONFIG_PATH];
}

/** `chronyc add server|pool ADDRESS OPTIONS...`; the host removed `xleave` already. */
export function addSourceArgv(source: NtpSource): string[] {
  return ['chronyc', 'add', source.kind, source.address, ...source.options];
}

/** Within this of the host's time the clock counts as set. */
const CLOCK_SET_TOLERANCE_MS = 50;

/**
 * Steps the clock to the host's time. `date` sets the time it was given when it runs, which on a busy
 * guest is a second or more after the agent computed it (seen: the guest 3 s behind): so the agent
 * checks the result against its monotonic clock and sets again with that lag added, up to three times.
 */
export async function setClockFromHost(hostTimeMs: number): Promise<void> {
  const start = performance.now();
  const hostNow = (): number => hostTimeMs + (performance.now() - start);
  let lead = 0;
  for (let attempt = 1; attempt <= 3; attempt++) {
    await runCommand(setClockArgv(hostNow() + lead));
    const behind = hostNow() - Date.now();
    if (Math.abs(behind) < CLOCK_SET_TOLERANCE_MS) return;
    logLine(`clock ${Math.round(behind)} ms behind the host after setting it (attempt ${attempt})`);
    lead += behind;
  }
}

export async function startChrony(sources: readonly NtpSource[]): Promise<void> {
  await writeFile(CHRONY_CONFIG_PATH, chronyConfig());
  await runCommand(chronydArgv());
  for (const source of sources) {
    // One bad source (an unresolvable name) must not cost the others.
    await runCommand(addSourceArgv(source)).catch((err: unknown) => {
      logLine(`NTP source ${source.address} not added: ${describeError(err)}`);
    });
  }
}

/** After a restore: step to the host's time, then let chronyd step too. */
export async function resyncAfterRestore(hostTimeMs: number): Promise<void> {
  await setClockFromHost(hostTimeMs);
  await runCommand(['chronyc', 'makestep']);
}
