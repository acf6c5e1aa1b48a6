/**
 * Starting the QEMU process. Its lifetime is bound to fcvm's: `setpriv --pdeathsig SIGKILL` asks the
 * kernel to kill QEMU when its parent dies, also when fcvm is killed with SIGKILL and can run no
 * cleanup of its own (QEMU 7.2 has no option for this; `-run-with` arrived later and does not do it
 * either). With a network namespace, `nsenter --net` enters it and then execs QEMU, so the PID that
 * fcvm sees is QEMU's own.
 */
import { open } from 'node:fs/promises';
import { type Helper, helperArgv, startHelper } from '../../util/subprocess.js';

export interface QemuLaunch {
  readonly binary: string;
  readonly args: readonly string[];
  readonly netnsPath: string | null;
  /** QEMU's own stdout and stderr are appended here (the guest console goes to the same file). */
  readonly logPath: string;
}

export type RunningQemu = Helper;

/** The full argv: wrappers first, QEMU last. */
export function launcherArgv(launch: QemuLaunch): string[] {
  return helperArgv([launch.binary, ...launch.args], launch.netnsPath);
}

export function launchQemu(launch: QemuLaunch): Promise<RunningQemu> {
  return startHelper([launch.binary, ...launch.args], {
    what: 'QEMU',
    errorCode: 'MISSING_HOST_TOOL',
    netnsPath: launch.netnsPath,
    logPath: launch.logPath,
  });
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
