/**
 * Typed client for Firecracker's REST API: one method per endpoint fcvm uses. Each body is checked
 * against fcvm's strict schema and against the version gates before it leaves, so a bug here shows
 * up as an internal error naming the field rather than as a 400 from Firecracker. Firecracker's
 * own rejections surface its `fault_message` in one sentence.
 */
import type { z } from 'zod';
import { FcvmError } from '../../errors.js';
import { log } from '../../log.js';
import {
  ActionSchema,
  type ActionType,
  BalloonSchema,
  BalloonUpdateSchema,
  BootSourceSchema,
  DrivePatchSchema,
  DriveSchema,
  EntropySchema,
  type InstanceInfo,
  InstanceInfoSchema,
  LoggerSchema,
  MachineConfigSchema,
  MetricsSchema,
  MmdsConfigSchema,
  type MmdsContents,
  MmdsContentsSchema,
  NetworkInterfaceSchema,
  RESOURCE_ID_PATTERN,
  SnapshotCreateSchema,
  SnapshotLoadSchema,
  VersionResponseSchema,
  VmStateSchema,
  VsockSchema,
} from './api-schemas.js';
import { exchange, type HttpMethod } from './api-transport.js';
import { type FirecrackerFeature, type FirecrackerVersion, formatVersion, supports } from './version.js';

/** Every body fcvm sends, with where it goes and the definition in Firecracker's spec that describes it. */
export const ENDPOINTS = {
  bootSource: { method: 'PUT', path: '/boot-source', schema: BootSourceSchema, spec: 'BootSource' },
  machineConfig: { method: 'PUT', path: '/machine-config', schema: MachineConfigSchema, spec: 'MachineConfiguration' },
  drive: { method: 'PUT', path: '/drives/{id}', schema: DriveSchema, spec: 'Drive' },
  drivePatch: { method: 'PATCH', path: '/drives/{id}', schema: DrivePatchSchema, spec: 'PartialDrive' },
  networkInterface: {
    method: 'PUT',
    path: '/network-interfaces/{id}',
    schema: NetworkInterfaceSchema,
    spec: 'NetworkInterface',
  },
  vsock: { method: 'PUT', path: '/vsock', schema: VsockSchema, spec: 'Vsock' },
  mmdsConfig: { method: 'PUT', path: '/mmds/config', schema: MmdsConfigSchema, spec: 'MmdsConfig' },
  mmdsPut: { method: 'PUT', path: '/mmds', schema: MmdsContentsSchema, spec: 'MmdsContentsObject' },
  mmdsPatch: { method: 'PATCH', path: '/mmds', schema: MmdsContentsSchema, spec: 'MmdsContentsObject' },
  entropy: { method: 'PUT', path: '/entropy', schema: EntropySchema, spec: 'EntropyDevice' },
  balloon: { method: 'PUT', path: '/balloon', schema: BalloonSchema, spec: 'Balloon' },
  balloonUpdate: { method: 'PATCH', path: '/balloon', schema: BalloonUpdateSchema, spec: 'BalloonUpdate' },
  logger: { method: 'PUT', path: '/logger', schema: LoggerSchema, spec: 'Logger' },
  metrics: { method: 'PUT', path: '/metrics', schema: MetricsSchema, spec: 'Metrics' },
  action: { method: 'PUT', path: '/actions', schema: ActionSchema, spec: 'InstanceActionInfo' },
  vmState: { method: 'PATCH', path: '/vm', schema: VmStateSchema, spec: 'Vm' },
  snapshotCreate: {
    method: 'PUT',
    path: '/snapshot/create',
    schema: SnapshotCreateSchema,
    spec: 'SnapshotCreateParams',
  },
  snapshotLoad: { method: 'PUT', path: '/snapshot/load', schema: SnapshotLoadSchema, spec: 'SnapshotLoadParams' },
} as const satisfies Record<string, { method: HttpMethod; path: string; schema: z.ZodType; spec: string }>;

export type EndpointName = keyof typeof ENDPOINTS;
export type EndpointBody<E extends EndpointName> = z.infer<(typeof ENDPOINTS)[E]['schema']>;

/** Top-level fields only some versions know; sending them to an older one is a bug. */
export const GATED_FIELDS: ReadonlyArray<{ endpoint: EndpointName; field: string; feature: FirecrackerFeature }> = [
  { endpoint: 'snapshotLoad', field: 'network_overrides', feature: 'networkOverrides' },
  { endpoint: 'snapshotLoad', field: 'track_dirty_pages', feature: 'trackDirtyPagesOnLoad' },
  { endpoint: 'snapshotLoad', field: 'vsock_override', feature: 'vsockOverride' },
  { endpoint: 'mmdsConfig', field: 'imds_compat', feature: 'imdsCompat' },
  { endpoint: 'balloon', field: 'free_page_hinting', feature: 'balloonFreePage' },
  { endpoint: 'balloon', field: 'free_page_reporting', feature: 'balloonFreePage' },
  { endpoint: 'networkInterface', field: 'mtu', feature: 'networkMtu' },
];

/** Deprecated fields that fcvm only sends to versions that lack their replacement. */
export const REPLACED_FIELDS: ReadonlyArray<{ endpoint: EndpointName; field: string; replacedBy: FirecrackerFeature }> =
  [{ endpoint: 'snapshotLoad', field: 'enable_diff_snapshots', replacedBy: 'trackDirtyPagesOnLoad' }];

/** Default deadline for one API call; slow calls (snapshots, InstanceStart) pass their own. */
export const DEFAULT_API_TIMEOUT_MS = 10_000;

export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal | undefined;
}

/** An answer from Firecracker that was not a success; `faultMessage` is Firecracker's own text. */
export class FirecrackerApiError extends FcvmError {
  readonly status: number;
  readonly faultMessage: string;

  constructor(what: string, status: number, faultMessage: string) {
    super('HYPERVISOR', `Firecracker rejected ${what}: ${faultMessage.trim().replace(/\.$/, '')}.`, {
      context: { status, faultMessage },
    });
    this.status = status;
    this.faultMessage = faultMessage;
  }
}

/** Firecracker's error text: `fault_message`, or micro_http's own `error` for transport-level problems. */
export function faultMessageOf(body: string): string {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null) {
      const record = parsed as Record<string, unknown>;
      if (typeof record.fault_message === 'string') return record.fault_message;
      if (typeof record.error === 'string') return record.error.split('\n')[0] ?? record.error;
    }
  } catch {
    // Not JSON (a 500 carries plain text): the raw text is the best description there is.
  }
  return body.trim() === '' ? 'no error description' : body.trim().slice(0, 300);
}

export class FirecrackerApiClient {
  readonly socketPath: string;
  readonly version: FirecrackerVersion;

  constructor(socketPath: string, version: FirecrackerVersion) {
    this.socketPath = socketPath;
    this.version = version;
  }

  /** Checks a body against fcvm's schema and the version gates. Exported through the client for tests. */
  checkBody<E extends EndpointName>(endpoint: E, body: EndpointBody<E>): EndpointBody<E> {
    const parsed = ENDPOINTS[endpoint].schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FcvmError(
        'INTERNAL',
        `fcvm built an invalid ${endpoint} request for Firecracker (${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}).`,
        { context: { body } },
      );
    }
    const fields = Object.keys(parsed.data as object);
    for (const gate of GATED_FIELDS) {
      if (gate.endpoint === endpoint && fields.includes(gate.field) && !supports(this.version, gate.feature)) {
        throw new FcvmError(
          'INTERNAL',
          `fcvm tried to send ${gate.field} to Firecracker ${formatVersion(this.version)}, which does not know it.`,
        );
      }
    }
    for (const old of REPLACED_FIELDS) {
      if (old.endpoint === endpoint && fields.includes(old.field) && supports(this.version, old.replacedBy)) {
        throw new FcvmError(
          'INTERNAL',
          `fcvm tried to send the deprecated ${old.field} to Firecracker ${formatVersion(this.version)}.`,
        );
      }
    }
    return parsed.data as EndpointBody<E>;
  }

  private async send<E extends EndpointName>(
    endpoint: E,
    body: EndpointBody<E>,
    options: CallOptions = {},
    id?: string,
  ): Promise<void> {
    const spec = ENDPOINTS[endpoint];
    let path: string = spec.path;
    if (path.includes('{id}')) {
      if (id === undefined || !RESOURCE_ID_PATTERN.test(id)) {
        throw new FcvmError('INTERNAL', `Invalid Firecracker resource id ${JSON.stringify(id)} for ${spec.path}.`);
      }
      path = path.replace('{id}', id);
    }
    const checked = this.checkBody(endpoint, body);
    const what = `${spec.method} ${path}`;
    log.debug(`firecracker ${what} ${JSON.stringify(checked)}`);
    const response = await exchange(this.socketPath, {
      method: spec.method,
      path,
      body: JSON.stringify(checked),
      timeoutMs: options.timeoutMs ?? DEFAULT_API_TIMEOUT_MS,
      signal: options.signal,
    });
    if (response.deprecation) log.debug(`firecracker marked ${what} as using a deprecated input`);
    if (response.status !== 204 && response.status !== 200) {
      throw new FirecrackerApiError(what, response.status, faultMessageOf(response.body));
    }
  }

  private async get<T>(path: string, schema: z.ZodType<T>, options: CallOptions = {}): Promise<T> {
    const response = await exchange(this.socketPath, {
      method: 'GET',
      path,
      timeoutMs: options.timeoutMs ?? DEFAULT_API_TIMEOUT_MS,
      signal: options.signal,
    });
    if (response.status !== 200)
      throw new FirecrackerApiError(`GET ${path}`, response.status, faultMessageOf(response.body));
    let json: unknown;
    try {
      json = JSON.parse(response.body);
    } catch (err) {
      throw new FcvmError('HYPERVISOR', `Firecracker answered GET ${path} with something that is not JSON.`, {
        cause: err,
      });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new FcvmError('HYPERVISOR', `Firecracker answered GET ${path} with an unexpected shape.`, {
        context: { body: response.body },
      });
    }
    return parsed.data;
  }

  describeInstance(options?: CallOptions): Promise<InstanceInfo> {
    return this.get('/', InstanceInfoSchema, options);
  }

  async getVersion(options?: CallOptions): Promise<string> {
    return (await this.get('/version', VersionResponseSchema, options)).firecracker_version;
  }

  getMmds(options?: CallOptions): Promise<MmdsContents> {
    return this.get('/mmds', MmdsContentsSchema, options);
  }

  putBootSource(body: EndpointBody<'bootSource'>, options?: CallOptions): Promise<void> {
    return this.send('bootSource', body, options);
  }

  putMachineConfig(body: EndpointBody<'machineConfig'>, options?: CallOptions): Promise<void> {
    return this.send('machineConfig', body, options);
  }

  putDrive(body: EndpointBody<'drive'>, options?: CallOptions): Promise<void> {
    return this.send('drive', body, options, body.drive_id);
  }

  patchDrive(body: EndpointBody<'drivePatch'>, options?: CallOptions): Promise<void> {
    return this.send('drivePatch', body, options, body.drive_id);
  }

  putNetworkInterface(body: EndpointBody<'networkInterface'>, options?: CallOptions): Promise<void> {
    return this.send('networkInterface', body, options, body.iface_id);
  }

  putVsock(body: EndpointBody<'vsock'>, options?: CallOptions): Promise<void> {
    return this.send('vsock', body, options);
  }

  putMmdsConfig(body: EndpointBody<'mmdsConfig'>, options?: CallOptions): Promise<void> {
    return this.send('mmdsConfig', body, options);
  }

  /** Replaces the whole MMDS store. */
  putMmds(body: MmdsContents, options?: CallOptions): Promise<void> {
    return this.send('mmdsPut', body, options);
  }

  /** RFC 7396 merge patch of the MMDS store. */
  patchMmds(body: MmdsContents, options?: CallOptions): Promise<void> {
    return this.send('mmdsPatch', body, options);
  }

  putEntropy(body: EndpointBody<'entropy'>, options?: CallOptions): Promise<void> {
    return this.send('entropy', body, options);
  }

  putBalloon(body: EndpointBody<'balloon'>, options?: CallOptions): Promise<void> {
    return this.send('balloon', body, options);
  }

  patchBalloon(body: EndpointBody<'balloonUpdate'>, options?: CallOptions): Promise<void> {
    return this.send('balloonUpdate', body, options);
  }

  putLogger(body: EndpointBody<'logger'>, options?: CallOptions): Promise<void> {
    return this.send('logger', body, options);
  }

  putMetrics(body: EndpointBody<'metrics'>, options?: CallOptions): Promise<void> {
    return this.send('metrics', body, options);
  }

  action(action: ActionType, options?: CallOptions): Promise<void> {
    return this.send('action', { action_type: action }, options);
  }

  setVmState(state: 'Paused' | 'Resumed', options?: CallOptions): Promise<void> {
    return this.send('vmState', { state }, options);
  }

  createSnapshot(body: EndpointBody<'snapshotCreate'>, options?: CallOptions): Promise<void> {
    return this.send('snapshotCreate', body, options);
  }

  loadSnapshot(body: EndpointBody<'snapshotLoad'>, options?: CallOptions): Promise<void> {
    return this.send('snapshotLoad', body, options);
  }
}
