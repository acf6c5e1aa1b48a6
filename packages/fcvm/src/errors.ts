/**
 * Errors that fcvm reports to its user. Every error has a stable `code` (match on it, not on
 * `instanceof`: bundles may hold two copies of this module) and maps to one documented exit status.
 *
 * Exit statuses (docs/ERRORS.md lists them for users):
 *   0   success
 *   1   a runtime failure of fcvm itself (VMM would not start, I/O error, ...)
 *   2   invalid input or a capability that is not available (usage errors)
 *   3   the target of a command does not exist (no such VM, snapshot or serve process)
 *   N   `podman run` and `exec` exit with the container's / command's own status
 */
export type FcvmErrorCode =
  | 'USAGE'
  | 'NOT_IMPLEMENTED'
  | 'NEEDS_ROOT'
  | 'NOT_FOUND'
  | 'CONFIG'
  | 'MISSING_HOST_TOOL'
  | 'ASSETS_MISSING'
  | 'ASSET_BUILD'
  | 'HYPERVISOR'
  | 'STATE'
  /** The guest agent refused a request, or the channel to it broke or spoke another protocol. */
  | 'AGENT'
  /** Setting up or tearing down a VM's network failed (namespace, pasta, links, nftables). */
  | 'NETWORK'
  /** A port given to --publish is already taken on its host address. */
  | 'PORT_IN_USE'
  | 'INTERNAL';

const EXIT_STATUS: Record<FcvmErrorCode, number> = {
  USAGE: 2,
  NOT_IMPLEMENTED: 2,
  NEEDS_ROOT: 2,
  CONFIG: 2,
  NOT_FOUND: 3,
  MISSING_HOST_TOOL: 1,
  ASSETS_MISSING: 1,
  ASSET_BUILD: 1,
  HYPERVISOR: 1,
  STATE: 1,
  AGENT: 1,
  NETWORK: 1,
  PORT_IN_USE: 2,
  INTERNAL: 1,
};

export interface FcvmErrorOptions {
  cause?: unknown;
  /** Evidence for logs at debug level: pids, paths, argv, stderr. Never shown in the one-line message. */
  context?: Record<string, unknown>;
}

export class FcvmError extends Error {
  readonly code: FcvmErrorCode;
  readonly context: Record<string, unknown>;

  constructor(code: FcvmErrorCode, message: string, options: FcvmErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FcvmError';
    this.code = code;
    this.context = options.context ?? {};
  }

  get exitStatus(): number {
    return EXIT_STATUS[this.code];
  }
}

export function isFcvmError(err: unknown): err is FcvmError {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'FcvmError' &&
    typeof (err as { code?: unknown }).code === 'string'
  );
}

export function usageError(message: string): FcvmError {
  return new FcvmError('USAGE', message);
}

/** For commands whose capability has not landed yet: say so, never pretend to work. */
export function notImplemented(what: string): FcvmError {
  return new FcvmError('NOT_IMPLEMENTED', `${what} is not implemented yet in this version of fcvm.`);
}

export function exitStatusOf(code: FcvmErrorCode): number {
  return EXIT_STATUS[code];
}

/** Node's errno-style errors (ENOENT, ESRCH, ...). */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
