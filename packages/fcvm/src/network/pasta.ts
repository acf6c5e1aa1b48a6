/**
 * pasta (Debian package passt) connects a rootless VM's namespace to the host: it answers for the
 * gateway 10.0.2.2 (the host's loopback services are reachable there), carries the guest's TCP and
 * UDP out through ordinary host sockets, and listens on the host for published ports. It runs in
 * the foreground under `setpriv --pdeathsig SIGKILL`, so it dies with fcvm; it does not end by
 * itself when the namespace goes away, so release() ends it.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { FcvmError } from '../errors.js';
import { processStartTime } from '../util/proc.js';
import { startHelper } from '../util/subprocess.js';
import type { PublishedPort } from './types.js';

export interface PastaOptions {
  /** The holder of the user + net namespace pasta attaches to. */
  readonly holderPid: number;
  /** The interface pasta creates in the namespace. */
  readonly ifname: string;
  readonly guestAddress: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly ports: readonly (PublishedPort & { readonly hostIp: string })[];
  readonly pidFile: string;
}

export interface RunningPasta {
  readonly pid: number;
  readonly startTime: number;
  stop(): Promise<void>;
}

const READY_DEADLINE_MS = 10_000;

function maskOf(prefixLength: number): string {
  const bits = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (bits >>> shift) & 0xff).join('.');
}

function forwardSpec(port: PublishedPort & { hostIp: string }): string {
  return `${port.hostIp}/${port.hostPort}:${port.guestPort}`;
}

export function pastaArgv(options: PastaOptions): string[] {
  const tcp = options.ports.filter((p) => p.protocol === 'tcp');
  const udp = options.ports.filter((p) => p.protocol === 'udp');
  return [
    'pasta',
    '--foreground',
    '--quiet',
    // As root pasta switches to nobody, which cannot enter the namespaces; stay root.
    ...(process.getuid?.() === 0 ? ['--runas', '0'] : []),
    '-P',
    options.pidFile,
    '--ns-ifname',
    options.ifname,
    '-a',
    options.guestAddress,
    '-n',
    maskOf(options.prefixLength),
    '-g',
    options.gateway,
    '--no-dhcp',
    '--ipv4-only',
    '--no-ndp',
    '--no-dhcpv6',
    '--no-ra',
    ...(tcp.length > 0 ? tcp.flatMap((p) => ['-t', forwardSpec(p)]) : ['-t', 'none']),
    ...(udp.length > 0 ? udp.flatMap((p) => ['-u', forwardSpec(p)]) : ['-u', 'none']),
    '-T',
    'none',
    '-U',
    'none',
    String(options.holderPid),
  ];
}

export async function startPasta(options: PastaOptions): Promise<RunningPasta> {
  const { child, pid, exited } = await startHelper(pastaArgv(options), {
    what: 'pasta (Debian package passt)',
    errorCode: 'MISSING_HOST_TOOL',
    stderr: 'pipe',
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4096);
  });
  const stop = async (): Promise<void> => {
    rmSync(options.pidFile, { force: true });
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForPidFile(child, options.pidFile, () => stderr);
  } catch (err) {
    await stop();
    throw err;
  }
  child.stderr?.removeAllListeners('data').resume();
  return { pid, startTime: processStartTime(pid) ?? 0, stop };
}

/** pasta writes its PID file once its namespace side and every listening socket are ready. */
async function waitForPidFile(child: ChildProcess, pidFile: string, stderr: () => string): Promise<void> {
  const deadline = Date.now() + READY_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (existsSync(pidFile)) return;
    if (child.exitCode !== null || child.signalCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const reason =
    stderr()
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.includes('to syslog'))
      .at(-1) ?? 'it did not become ready in 10 s';
  throw new FcvmError('NETWORK', `pasta could not connect the VM network: ${reason.trim()}.`, {
    context: { stderr: stderr() },
  });
}
