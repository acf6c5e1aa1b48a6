/**
 * Starting the QEMU process. Its lifetime is bound to fcvm's: `setpriv --pdeathsig SIGKILL` asks the
 * kernel to kill QEMU when its parent dies, also when fcvm is killed with SIGKILL and can run no
 * cleanup of its own (QEMU 7.2 has no option for this; `-run-with` arrived later and does not do it
 * either). With a network namespace, `nsenter --net` enters it and then execs QEMU, so the PID that
 * fcvm sees is QEMU's own.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { FcvmError } from '../../errors.js';
import type { VmExit } from '../types.js';

export interface QemuLaunch {
  readonly binary: string;
  readonly args: readonly string[];
  readonly netnsPath: string | null;
  /** QEMU's own stdout and stderr are appended here (the guest console goes to the same file). */
  readonly logPath: string;
}

export interface RunningQemu {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the process has exited. */
  readonly exited: Promise<VmExit>;
}

/** The full argv: wrappers first, QEMU last. */
export function launcherArgv(launch: QemuLaunch): string[] {
  const netns = launch.netnsPath === null ? [] : ['nsenter', `--net=${launch.netnsPath}`, '--'];
  return ['setpriv', '--pdeathsig', 'SIGKILL', '--', ...netns, launch.binary, ...launch.args];
}

export async function launchQemu(launch: QemuLaunch): Promise<RunningQemu> {
  const [command, ...args] = launcherArgv(launch);
  const logFd = openSync(launch.logPath, 'a', 0o600);
  let child: ChildProcess;
  try {
    // Own process group: a Ctrl-C on fcvm's terminal is for fcvm, which then stops the VM in order.
    child = spawn(command!, args, { stdio: ['ignore', logFd, logFd], detached: true });
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<VmExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) =>
      reject(
        new FcvmError('MISSING_HOST_TOOL', `Could not start QEMU through ${command}: ${err.message}.`, {
          cause: err,
          context: { argv: [command, ...args] },
        }),
      ),
    );
  });
  if (child.pid === undefined) throw new FcvmError('INTERNAL', 'QEMU started without a PID.');
  return { child, pid: child.pid, exited };
}

/** The last lines of the VM log, to explain why QEMU failed. */
export async function logTail(logPath: string, maxBytes = 2048): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(logPath, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8').trim();
  } catch {
    // The tail only decorates an error message: an unreadable log must not replace the real error.
    return '';
  } finally {
    await handle?.close();
  }
}
