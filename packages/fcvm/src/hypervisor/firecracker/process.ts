/**
 * The Firecracker process of one VM: spawned with its API socket in the VM directory, its output
 * (Firecracker's log and the guest's serial console) appended to the VM log, its lifetime bound to
 * fcvm and its exit collected.
 *
 * Lifetime binding: Node cannot run code between fork and exec, so the parent-death signal is set
 * by util-linux `setpriv --pdeathsig SIGKILL`, which then execs (optionally through `nsenter
 * --net=...`, which execs without forking) the firecracker binary. The PID therefore stays the
 * same through the chain and the kernel kills Firecracker when fcvm dies, even by SIGKILL.
 * Without setpriv fcvm warns and relies on its own cleanup and the next run's leftover sweep.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import { poll } from '../../util/poll.js';
import type { VmExit } from '../types.js';
import { FirecrackerApiClient } from './api-client.js';
import { isTransportFailure } from './api-transport.js';
import { findOnPath } from './binary.js';
import type { FirecrackerVersion } from './version.js';

export const API_SOCKET_NAME = 'firecracker.sock';
export const VSOCK_SOCKET_NAME = 'vsock.sock';

const SOCKET_POLL_MS = 10;
/** How long a dropped API connection may take to show up as the process's exit. */
const EXIT_SETTLE_MS = 500;
export const DEFAULT_SOCKET_WAIT_MS = 10_000;

let pdeathsigWrapper: string[] | null | undefined;

/** argv prefix that makes the next exec'd program die with fcvm, or null when setpriv cannot. */
export function parentDeathWrapper(): string[] | null {
  if (pdeathsigWrapper !== undefined) return pdeathsigWrapper;
  const setpriv = findOnPath('setpriv');
  // --pdeathsig arrived in util-linux 2.33: check this setpriv knows it before relying on it.
  const works =
    setpriv !== undefined &&
    spawnSync(setpriv, ['--pdeathsig', 'SIGKILL', '--', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  if (works) {
    pdeathsigWrapper = [setpriv, '--pdeathsig', 'SIGKILL', '--'];
  } else {
    pdeathsigWrapper = null;
    log.warn(
      'setpriv (util-linux) with --pdeathsig is not available, so a Firecracker process can outlive fcvm if fcvm is killed; install util-linux to bind them.',
    );
  }
  return pdeathsigWrapper;
}

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

  constructor(child: ChildProcess, spec: ProcessSpec, apiSocketPath: string) {
    if (child.pid === undefined) throw new FcvmError('INTERNAL', 'Firecracker child has no PID.');
    this.child = child;
    this.pid = child.pid;
    this.vmId = spec.vmId;
    this.apiSocketPath = apiSocketPath;
    this.consoleLogPath = spec.consoleLogPath;
    this.exited = new Promise<VmExit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitValue = { code, signal };
        log.debug(`firecracker ${this.pid} (VM ${spec.vmId}) exited ${describeExit(this.exitValue)}`);
        resolve(this.exitValue);
      });
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
  const netnsArgv =
    spec.netnsPath === null ? [] : [findOnPath('nsenter') ?? 'nsenter', `--net=${spec.netnsPath}`, '--'];
  const argv = [...(parentDeathWrapper() ?? []), ...netnsArgv, ...firecrackerArgv];

  const logFd = openSync(spec.consoleLogPath, 'a', 0o600);
  let child: ChildProcess;
  try {
    // detached: its own process group, so a Ctrl-C at fcvm's terminal reaches fcvm, which then
    // stops the VM in order, rather than killing Firecracker behind its back.
    child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', logFd, logFd], detached: true, cwd: spec.vmDir });
  } finally {
    closeSync(logFd);
  }
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (child.pid === undefined) {
    const err = await spawnError;
    throw new FcvmError('HYPERVISOR', `Could not start ${argv[0]}: ${errnoCode(err) ?? err.message}.`, {
      cause: err,
      context: { argv },
    });
  }
  const vmm = new FirecrackerProcess(child, spec, apiSocketPath);
  log.debug(`started firecracker ${vmm.pid} for VM ${spec.vmId}: ${argv.join(' ')}`);
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
