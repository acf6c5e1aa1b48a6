/**
 * JSON messages of the channel: their types and their validators. Types are readonly; each
 * `parseX(input: unknown)` rejects unknown fields and returns a value of the type, or throws
 * MessageValidationError naming the field.
 */
import {
  expectArray,
  expectBoolean,
  expectInteger,
  expectNullableInteger,
  expectNullableString,
  expectObject,
  expectOneOf,
  expectString,
  expectStringArray,
  expectStringRecord,
  MessageValidationError,
} from './guards.js';

// ---------------------------------------------------------------------------------------------
// Handshake

export interface HelloRequest {
  readonly protocolVersion: number;
  /** The per-VM secret; the host also writes it into the guest as /run/fcvm/token. */
  readonly token: string;
  /** Host wall clock (ms since the epoch) when the request was made. */
  readonly hostTimeMs: number;
  /**
   * Increases with every snapshot restore of this VM (0 at cold boot). A value the agent has not
   * seen before makes it run the restore sequence before it answers.
   */
  readonly restoreEpoch: number;
  /**
   * Only on the first hello of a restored VM (a clone): what makes it a machine of its own. The
   * agent mixes `entropy` (host random bytes, hex) into its CRNG and reseeds it, so clones of one
   * snapshot never share random streams, and takes `hostname` as its identity.
   */
  readonly restore?: RestoreIdentity;
}

export interface RestoreIdentity {
  /** At least 32 random bytes from the host, hex. */
  readonly entropy: string;
  readonly hostname: string;
}

export interface HelloResponse {
  readonly protocolVersion: number;
  readonly agentVersion: string;
  /** Random id chosen when the agent process started; clones of one snapshot share it. */
  readonly bootId: string;
  /** True when this hello made the agent run its restore sequence. */
  readonly restored: boolean;
  readonly phase: AgentPhase;
}

const MAX_EPOCH = Number.MAX_SAFE_INTEGER;

export function parseHelloRequest(input: unknown): HelloRequest {
  const o = expectObject(input, 'hello', ['protocolVersion', 'token', 'hostTimeMs', 'restoreEpoch', 'restore']);
  const hello = {
    protocolVersion: expectInteger(o.protocolVersion, 'hello.protocolVersion', 0, 0xffff),
    token: expectString(o.token, 'hello.token'),
    hostTimeMs: expectInteger(o.hostTimeMs, 'hello.hostTimeMs', 0, MAX_EPOCH),
    restoreEpoch: expectInteger(o.restoreEpoch, 'hello.restoreEpoch', 0, MAX_EPOCH),
  };
  return o.restore === undefined ? hello : { ...hello, restore: parseRestoreIdentity(o.restore) };
}

const ENTROPY_HEX = /^(?:[0-9a-f]{2}){32,512}$/;
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/;

function parseRestoreIdentity(input: unknown): RestoreIdentity {
  const o = expectObject(input, 'hello.restore', ['entropy', 'hostname']);
  const entropy = expectString(o.entropy, 'hello.restore.entropy');
  if (!ENTROPY_HEX.test(entropy)) {
    throw new MessageValidationError('hello.restore.entropy', 'must be 32 to 512 bytes as lowercase hex');
  }
  const hostname = expectString(o.hostname, 'hello.restore.hostname');
  if (!HOSTNAME.test(hostname)) throw new MessageValidationError('hello.restore.hostname', 'must be a host name');
  return { entropy, hostname };
}

export function parseHelloResponse(input: unknown): HelloResponse {
  const o = expectObject(input, 'hello', ['protocolVersion', 'agentVersion', 'bootId', 'restored', 'phase']);
  return {
    protocolVersion: expectInteger(o.protocolVersion, 'hello.protocolVersion', 0, 0xffff),
    agentVersion: expectString(o.agentVersion, 'hello.agentVersion'),
    bootId: expectString(o.bootId, 'hello.bootId'),
    restored: expectBoolean(o.restored, 'hello.restored'),
    phase: expectOneOf(o.phase, 'hello.phase', AGENT_PHASES),
  };
}

// ---------------------------------------------------------------------------------------------
// Boot plan

/** Where the container image comes from. Archive paths are guest paths (a disk or an injected file). */
export type ImageSource =
  | { readonly kind: 'archive'; readonly format: 'docker-archive' | 'oci-archive'; readonly path: string }
  | { readonly kind: 'registry'; readonly reference: string };

export type NetworkPlan =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'static';
      /** Always eth0 today; kept explicit so logs say which device. */
      readonly device: string;
      /** CIDR, e.g. `10.0.2.100/24`. */
      readonly address: string;
      readonly gateway: string;
      readonly mtu: number | null;
      readonly dnsServers: readonly string[];
      readonly searchDomains: readonly string[];
    };

/** One `server` or `pool` line of the host's chrony config, `xleave` already removed. */
export interface NtpSource {
  readonly kind: 'server' | 'pool';
  readonly address: string;
  readonly options: readonly string[];
}

export interface BootPlan {
  readonly hostname: string;
  readonly image: ImageSource;
  /** Reference to run once an archive is loaded (e.g. `localhost/fcvm-busybox`); null: the loaded image. */
  readonly imageReference: string | null;
  /** Command and arguments; null runs the image's default. */
  readonly command: readonly string[] | null;
  readonly env: Readonly<Record<string, string>>;
  /** podman `--user` value, null for the image default. */
  readonly user: string | null;
  readonly workdir: string | null;
  readonly tty: boolean;
  readonly interactive: boolean;
  readonly network: NetworkPlan;
  readonly hostTimeMs: number;
  readonly ntpSources: readonly NtpSource[];
}

const IMAGE_FORMATS = ['docker-archive', 'oci-archive'] as const;

function parseImageSource(input: unknown, path: string): ImageSource {
  const kind = expectOneOf(
    typeof input === 'object' && input !== null ? (input as { kind?: unknown }).kind : undefined,
    `${path}.kind`,
    ['archive', 'registry'],
  );
  if (kind === 'archive') {
    const o = expectObject(input, path, ['kind', 'format', 'path']);
    return {
      kind,
      format: expectOneOf(o.format, `${path}.format`, IMAGE_FORMATS),
      path: expectString(o.path, `${path}.path`, { nonEmpty: true }),
    };
  }
  const o = expectObject(input, path, ['kind', 'reference']);
  return { kind, reference: expectString(o.reference, `${path}.reference`, { nonEmpty: true }) };
}

function parseNetworkPlan(input: unknown, path: string): NetworkPlan {
  const kind = expectOneOf(
    typeof input === 'object' && input !== null ? (input as { kind?: unknown }).kind : undefined,
    `${path}.kind`,
    ['none', 'static'],
  );
  if (kind === 'none') {
    expectObject(input, path, ['kind']);
    return { kind };
  }
  const o = expectObject(input, path, ['kind', 'device', 'address', 'gateway', 'mtu', 'dnsServers', 'searchDomains']);
  const address = expectString(o.address, `${path}.address`);
  if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(address)) {
    throw new MessageValidationError(`${path}.address`, 'must be an address with a prefix length (CIDR)');
  }
  return {
    kind,
    device: expectString(o.device, `${path}.device`, { nonEmpty: true }),
    address,
    gateway: expectString(o.gateway, `${path}.gateway`, { nonEmpty: true }),
    mtu: expectNullableInteger(o.mtu, `${path}.mtu`, 68, 65535),
    dnsServers: expectStringArray(o.dnsServers, `${path}.dnsServers`),
    searchDomains: expectStringArray(o.searchDomains, `${path}.searchDomains`),
  };
}

function parseNtpSource(input: unknown, path: string): NtpSource {
  const o = expectObject(input, path, ['kind', 'address', 'options']);
  return {
    kind: expectOneOf(o.kind, `${path}.kind`, ['server', 'pool']),
    address: expectString(o.address, `${path}.address`, { nonEmpty: true }),
    options: expectStringArray(o.options, `${path}.options`),
  };
}

export function parseBootPlan(input: unknown): BootPlan {
  const o = expectObject(input, 'plan', [
    'hostname',
    'image',
    'imageReference',
    'command',
    'env',
    'user',
    'workdir',
    'tty',
    'interactive',
    'network',
    'hostTimeMs',
    'ntpSources',
  ]);
  const hostname = expectString(o.hostname, 'plan.hostname', { nonEmpty: true });
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(hostname)) {
    throw new MessageValidationError('plan.hostname', 'must be 1-63 letters, digits, dots, dashes or underscores');
  }
  return {
    hostname,
    image: parseImageSource(o.image, 'plan.image'),
    imageReference: expectNullableString(o.imageReference, 'plan.imageReference'),
    command: o.command === null ? null : expectStringArray(o.command, 'plan.command'),
    env: expectStringRecord(o.env, 'plan.env'),
    user: expectNullableString(o.user, 'plan.user'),
    workdir: expectNullableString(o.workdir, 'plan.workdir'),
    tty: expectBoolean(o.tty, 'plan.tty'),
    interactive: expectBoolean(o.interactive, 'plan.interactive'),
    network: parseNetworkPlan(o.network, 'plan.network'),
    hostTimeMs: expectInteger(o.hostTimeMs, 'plan.hostTimeMs', 0, MAX_EPOCH),
    ntpSources: expectArray(o.ntpSources, 'plan.ntpSources', parseNtpSource),
  };
}

// ---------------------------------------------------------------------------------------------
// Status

/**
 * Life of the agent:  waiting-plan -> preparing -> running -> exited
 *                                          \-> failed (plan could not be carried out)
 */
export const AGENT_PHASES = ['waiting-plan', 'preparing', 'running', 'exited', 'failed'] as const;
export type AgentPhase = (typeof AGENT_PHASES)[number];

export const HEALTH_STATES = ['starting', 'healthy', 'unhealthy', 'stopped'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

export interface AgentStatus {
  readonly phase: AgentPhase;
  readonly health: HealthState;
  /** Set once the container has exited. */
  readonly exitCode: number | null;
  /** Why the plan failed, for phase `failed`. */
  readonly failure: string | null;
  readonly restoreEpoch: number;
}

export function parseAgentStatus(input: unknown): AgentStatus {
  const o = expectObject(input, 'status', ['phase', 'health', 'exitCode', 'failure', 'restoreEpoch']);
  return {
    phase: expectOneOf(o.phase, 'status.phase', AGENT_PHASES),
    health: expectOneOf(o.health, 'status.health', HEALTH_STATES),
    exitCode: expectNullableInteger(o.exitCode, 'status.exitCode', 0, 255),
    failure: expectNullableString(o.failure, 'status.failure'),
    restoreEpoch: expectInteger(o.restoreEpoch, 'status.restoreEpoch', 0, MAX_EPOCH),
  };
}

// ---------------------------------------------------------------------------------------------
// Interactive sessions (carried in frames, see frames.ts)

export interface TerminalSize {
  readonly rows: number;
  readonly cols: number;
}

export function parseTerminalSize(input: unknown, path = 'size'): TerminalSize {
  const o = expectObject(input, path, ['rows', 'cols']);
  return {
    rows: expectInteger(o.rows, `${path}.rows`, 1, 0xffff),
    cols: expectInteger(o.cols, `${path}.cols`, 1, 0xffff),
  };
}

/** START frame of an exec session. */
export interface ExecSpec {
  readonly command: readonly string[];
  /** true: in the guest OS (`fcvm exec --vm`); false: in the container (`podman exec`). */
  readonly inVm: boolean;
  /** Keep stdin open and forward it. */
  readonly interactive: boolean;
  /** Run under a pseudo-terminal of this initial size; null: plain pipes. */
  readonly terminal: TerminalSize | null;
  readonly env: Readonly<Record<string, string>>;
  readonly workdir: string | null;
}

export function parseExecSpec(input: unknown): ExecSpec {
  const o = expectObject(input, 'exec', ['command', 'inVm', 'interactive', 'terminal', 'env', 'workdir']);
  const command = expectStringArray(o.command, 'exec.command');
  if (command.length === 0) throw new MessageValidationError('exec.command', 'must name a program');
  return {
    command,
    inVm: expectBoolean(o.inVm, 'exec.inVm'),
    interactive: expectBoolean(o.interactive, 'exec.interactive'),
    terminal: o.terminal === null ? null : parseTerminalSize(o.terminal, 'exec.terminal'),
    env: expectStringRecord(o.env, 'exec.env'),
    workdir: expectNullableString(o.workdir, 'exec.workdir'),
  };
}

/** START frame of a container attach: the host's terminal size when the plan asked for a TTY. */
export interface AttachSpec {
  readonly terminal: TerminalSize | null;
}

export function parseAttachSpec(input: unknown): AttachSpec {
  const o = expectObject(input, 'attach', ['terminal']);
  return { terminal: o.terminal === null ? null : parseTerminalSize(o.terminal, 'attach.terminal') };
}

/** EXIT frame: how the process ended. A signal is also folded into exitCode as 128+N. */
export interface ExitReport {
  readonly exitCode: number;
  readonly signal: string | null;
}

export function parseExitReport(input: unknown): ExitReport {
  const o = expectObject(input, 'exit', ['exitCode', 'signal']);
  return {
    exitCode: expectInteger(o.exitCode, 'exit.exitCode', 0, 255),
    signal: expectNullableString(o.signal, 'exit.signal'),
  };
}

/** NOTICE frame of a container attach: progress the host may log or record. */
export type Notice =
  | { readonly kind: 'phase'; readonly phase: AgentPhase; readonly detail: string | null }
  | { readonly kind: 'started' }
  | { readonly kind: 'health'; readonly health: HealthState };

export function parseNotice(input: unknown): Notice {
  const kind = expectOneOf(
    typeof input === 'object' && input !== null ? (input as { kind?: unknown }).kind : undefined,
    'notice.kind',
    ['phase', 'started', 'health'],
  );
  if (kind === 'phase') {
    const o = expectObject(input, 'notice', ['kind', 'phase', 'detail']);
    return {
      kind,
      phase: expectOneOf(o.phase, 'notice.phase', AGENT_PHASES),
      detail: expectNullableString(o.detail, 'notice.detail'),
    };
  }
  if (kind === 'health') {
    const o = expectObject(input, 'notice', ['kind', 'health']);
    return { kind, health: expectOneOf(o.health, 'notice.health', HEALTH_STATES) };
  }
  expectObject(input, 'notice', ['kind']);
  return { kind };
}
