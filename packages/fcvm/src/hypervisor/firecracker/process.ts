/**
 * The Firecracker process of one VM: spawned with its API socket in the VM directory, its output
 * (Firecracker's log and the guest's serial console) appended to the VM log, its lifetime bound to
 * fcvm and its exit collected.
 *
 * Lifetime binding: started as a helper (util/subprocess.ts `startHelper`): util-linux `setpriv
 * --pdeathsig SIGKILL` execs (optionally through `nsenter --net=...`, which execs without forking)
 * the firecracker binary, so the PID stays the same through the chain and the kernel kills
 * Firecracker when fcvm dies, even by SIGKILL. Without setpriv fcvm warns and relies on its own
 * cleanup and the next run's leftover sweep.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import { poll } from '../../util/poll.js';
import { type Helper, startHelper } from '../../util/subprocess.js';
import type { VmExit } from '../types.js';
import { FirecrackerApiClient } from './api-client.js';
import { isTransportFailure } from './api-transport.js';
import type { FirecrackerVersion } from './version.js';

export const API_SOCKET_NAME = 'firecracker.sock';
export const VSOCK_SOCKET_NAME = 'vsock.sock';

const SOCKET_POLL_MS = 10;
/** How long a dropped API connection may take to show up as the process's exit. */
const EXIT_SETTLE_MS = 500;
export const DEFAULT_SOCKET_WAIT_MS = 10_000;

/** Firecracker's `--id`: 1-64 characters, alphanumerics and `-`. */
export function instanceId(vmId: string): string {
  const cleaned = vmId.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 64);
  return cleaned === '' ? 'fcvm' : cleaned;
}

export function describeExit(exit: VmExit): string {
  return exit.signal ? `on signal ${exit.signal}` : `with status ${exit.code}`;
}

export interface ProcessSpec {
  readonly binary: string;
  readonly vmId: string;
  readonly vmDir: string;
  readonly consoleLogPath: string;
  readonly netnsPath: string | null;
}

export class FirecrackerProcess {
  readonly pid: number;
  readonly vmId: string;
  readonly apiSocketPath: string;
  readonly consoleLogPath: string;
  readonly exited: Promise<VmExit>;
  private exitValue: VmExit | undefined;
  private readonly child: ChildProcess;

  constructor(helper: Helper, spec: ProcessSpec, apiSocketPath: string) {
    this.child = helper.child;
    this.pid = helper.pid;
    this.vmId = spec.vmId;
    this.apiSocketPath = apiSocketPath;
    this.consoleLogPath = spec.consoleLogPath;
    this.exited = helper.exited.then((exit) => {
      this.exitValue = exit;
      log.debug(`firecracker ${this.pid} (VM ${spec.vmId}) exited ${describeExit(exit)}`);
      return exit;
    });
  }

  /** The exit, once the process has ended. */
  get exit(): VmExit | undefined {
    return this.exitValue;
  }

  get running(): boolean {
    return this.exitValue === undefined;
  }

  /** Sends a signal; false when the process is already gone. */
  kill(signal: NodeJS.Signals): boolean {
    if (!this.running) return false;
    try {
      return this.child.kill(signal);
    } catch (err) {
      if (errnoCode(err) === 'ESRCH') return false;
      throw err;
    }
  }

  /** Resolves with the exit if it happens within `ms`, else undefined. */
  async exitWithin(ms: number): Promise<VmExit | undefined> {
    if (this.exitValue) return this.exitValue;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, ms, undefined);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL and wait for the exit. */
  async killAndWait(): Promise<VmExit> {
    this.kill('SIGKILL');
    return this.exited;
  }

  /**
   * Runs an API call and, when it fails because the socket went away with the process, reports
   * the process's death instead of a connection error.
   */
  async guard<T>(what: string, op: () => Promise<T>): Promise<T> {
    if (!this.running) throw this.deadError(what);
    try {
      return await op();
    } catch (err) {
      if (isTransportFailure(err) && (await this.exitWithin(EXIT_SETTLE_MS))) throw this.deadError(what, err);
      throw err;
    }
  }

  /** The error for "Firecracker is gone", naming how it ended and where its output is. */
  deadError(during?: string, cause?: unknown): FcvmError {
    const how = this.exitValue ? describeExit(this.exitValue) : 'unexpectedly';
    const when = during ? ` during ${during}` : '';
    return new FcvmError(
      'HYPERVISOR',
      `Firecracker of VM ${this.vmId} exited ${how}${when}; its output is in ${this.consoleLogPath}.`,
      { cause, context: { pid: this.pid, exit: this.exitValue, logTail: readLogTail(this.consoleLogPath) } },
    );
  }
}

/** The last lines of the VM log, for error context; reads at most the final 8 KiB. */
export function readLogTail(path: string, lines = 20): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const length = Math.min(size, 8192);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString('utf8').split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(log unreadable: ${errnoCode(err) ?? String(err)})`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** `sockaddr_un.sun_path` holds 108 bytes including the terminating NUL. */
const UNIX_SOCKET_PATH_MAX = 107;

/**
 * Refuses socket paths the kernel cannot bind, before anything is started. `reserve` leaves room
 * for suffixes derived from the path (vsock listeners are `<uds_path>_<port>`).
 */
export function assertSocketPathFits(path: string, reserve = 0): void {
  const length = Buffer.byteLength(path);
  if (length + reserve <= UNIX_SOCKET_PATH_MAX) return;
  throw new FcvmError(
    'USAGE',
    `The socket path ${path} is ${length} bytes long, too long for a Unix socket (at most ${UNIX_SOCKET_PATH_MAX - reserve} here); use a shorter data directory (FCVM_DATA_DIR).`,
  );
}

/** Removes a socket file; "already gone" is success. */
export function removeSocket(path: string): void {
  rmSync(path, { force: true });
}

export interface StartOptions {
  readonly signal?: AbortSignal | undefined;
  readonly socketWaitMs?: number;
}

/**
 * Spawns Firecracker and waits until its API answers. On any failure the process is killed and
 * its socket removed before the error is thrown.
 */
export async function startFirecrackerProcess(
  spec: ProcessSpec,
  version: FirecrackerVersion,
  options: StartOptions = {},
): Promise<{ vmm: FirecrackerProcess; client: FirecrackerApiClient }> {
  const apiSocketPath = join(spec.vmDir, API_SOCKET_NAME);
  assertSocketPathFits(apiSocketPath);
  // Firecracker refuses to start when its socket path exists; a stale one is from a dead run.
  removeSocket(apiSocketPath);

  const firecrackerArgv = [spec.binary, '--api-sock', apiSocketPath, '--id', instanceId(spec.vmId)];
  const helper = await startHelper(firecrackerArgv, {
    what: 'Firecracker',
    errorCode: 'HYPERVISOR',
    netnsPath: spec.netnsPath,
    logPath: spec.consoleLogPath,
    cwd: spec.vmDir,
  });
  const vmm = new FirecrackerProcess(helper, spec, apiSocketPath);
  log.debug(`started firecracker ${vmm.pid} for VM ${spec.vmId}: ${firecrackerArgv.join(' ')}`);
  const client = new FirecrackerApiClient(apiSocketPath, version);
  try {
    await waitForApi(vmm, client, options);
  } catch (err) {
    await vmm.killAndWait();
    removeSocket(apiSocketPath);
    throw err;
  }
  return { vmm, client };
}

async function waitForApi(vmm: FirecrackerProcess, client: FirecrackerApiClient, options: StartOptions) {
  const waitMs = options.socketWaitMs ?? DEFAULT_SOCKET_WAIT_MS;
  let lastError: unknown;
  await poll(
    async (remainingMs) => {
      if (options.signal?.aborted) {
        throw new FcvmError('HYPERVISOR', `Starting Firecracker for VM ${vmm.vmId} was cancelled.`);
      }
      if (!vmm.running) throw vmm.deadError('start-up, before its API socket appeared');
      if (!existsSync(vmm.apiSocketPath)) return undefined;
      try {
        await client.describeInstance({ timeoutMs: Math.max(100, remainingMs), signal: options.signal });
        return true;
      } catch (err) {
        // Bound but not yet accepting, or the process died meanwhile: the next round decides.
        lastError = err;
        return undefined;
      }
    },
    {
      timeoutMs: waitMs,
      delayMs: SOCKET_POLL_MS,
      onTimeout: () =>
        new FcvmError(
          'HYPERVISOR',
          `Firecracker for VM ${vmm.vmId} did not open its API socket ${vmm.apiSocketPath} within ${waitMs / 1000} s; its output is in ${vmm.consoleLogPath}.`,
          { cause: lastError },
        ),
    },
  );
}
