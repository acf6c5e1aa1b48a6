/**
 * The process that holds a VM's namespaces: `unshare --user --map-root-user --net sleep infinity`
 * under `setpriv --pdeathsig SIGKILL`, so the namespaces (and the tap and bridge inside) vanish when
 * fcvm dies, even by SIGKILL. A user namespace is made as root too: pasta joins a namespace by PID
 * only together with its user namespace (measured: a bare net namespace is refused).
 */
import type { ChildProcess } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { FcvmError } from '../errors.js';
import { processStartTime } from '../util/proc.js';
import { startHelper } from '../util/subprocess.js';

export interface NamespaceHolder {
  readonly pid: number;
  readonly startTime: number;
  readonly netnsPath: string;
  stop(): Promise<void>;
}

const READY_DEADLINE_MS = 5_000;

function nsLink(pid: number | 'self', kind: 'net' | 'user'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

export async function startNamespaceHolder(): Promise<NamespaceHolder> {
  const { child, pid, exited } = await startHelper(
    ['unshare', '--user', '--map-root-user', '--net', '--', 'sleep', 'infinity'],
    { what: 'the namespace holder (unshare)', errorCode: 'MISSING_HOST_TOOL' },
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  try {
    await waitUntilNamespaced(child, pid);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid, startTime: processStartTime(pid) ?? 0, netnsPath: `/proc/${pid}/ns/net`, stop };
}

/** Until unshare has made the namespaces, /proc/PID/ns/* still name fcvm's own. */
async function waitUntilNamespaced(child: ChildProcess, pid: number): Promise<void> {
  const ownNet = nsLink('self', 'net');
  const ownUser = nsLink('self', 'user');
  const deadline = Date.now() + READY_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    const net = nsLink(pid, 'net');
    const user = nsLink(pid, 'user');
    // `sleep` runs once unshare has written the uid map: only then may pasta join.
    const execd = exeOf(pid)?.endsWith('/sleep') ?? false;
    if (execd && net !== undefined && user !== undefined && net !== ownNet && user !== ownUser) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new FcvmError(
    'NETWORK',
    'Could not create the VM network namespace (unshare --user --net failed); check that user namespaces are enabled (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces).',
  );
}
