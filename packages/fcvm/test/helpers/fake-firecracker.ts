/**
 * A stand-in for the firecracker binary, for tests on hosts without KVM or without Firecracker.
 * It answers `--version` and serves Firecracker's API on `--api-sock` with the behaviour that
 * matters to a client (firecracker-protocols.md):
 *
 *  - bodies are parsed strictly: unknown fields, and fields newer than the emulated version, are
 *    400 "unknown field"; bodies need Content-Length (chunked bodies read as empty);
 *  - phase rules: pre-boot-only and post-boot-only endpoints, InstanceStart once,
 *    /snapshot/load only on a fresh process (nothing boot-related configured), /snapshot/create
 *    only while paused;
 *  - a failed /snapshot/load answers 400 and then ends the process;
 *  - hybrid vsock: the device socket is bound during PUT /vsock (EADDRINUSE if the path exists)
 *    and answers `CONNECT <port>\n` with `OK <n>\n` for the guest ports that "listen";
 *  - snapshots are small JSON state files plus a sparse memory file of the guest's size.
 *
 * It is written in the protocols note's terms, not from fcvm's schemas, so it checks the adapter
 * independently. Knobs (environment): FAKE_FC_VERSION (default 1.16.1), FAKE_FC_GUEST_PORTS
 * (comma list, default 4998), FAKE_FC_GUEST_GREETING (bytes the guest sends right after accepting),
 * FAKE_FC_IGNORE_CTRL_ALT_DEL=1, FAKE_FC_DIE_ON="METHOD /path" (exit 3 without answering),
 * FAKE_FC_EXIT_AT_START=<message>, FAKE_FC_REQUEST_LOG=<file> (one JSON line per request).
 */
import {
  appendFileSync,
  closeSync,
  existsSync,
  ftruncateSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type Server, type Socket } from 'node:net';

const env = process.env;
const args = process.argv.slice(2);
const VERSION = env.FAKE_FC_VERSION ?? '1.16.1';

function versionAtLeast(since: string): boolean {
  const a = VERSION.split('.').map(Number);
  const b = since.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

if (args.includes('--version')) {
  process.stdout.write(`Firecracker v${VERSION}\n\n`);
  process.exit(0);
}

let apiSock: string | undefined;
let instanceId = 'anonymous-instance';
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === '--api-sock') apiSock = args[++i];
  else if (arg === '--id') instanceId = args[++i] ?? '';
  else if (arg === '--level' || arg === '--log-path') i++;
  else if (arg === '--no-seccomp' || arg === '--show-level') continue;
  else {
    process.stderr.write(`error: unexpected argument '${arg}' found\n`);
    process.exit(153);
  }
}
if (!apiSock) {
  process.stderr.write('fake-firecracker: --api-sock is required in this fake\n');
  process.exit(153);
}
if (!/^[A-Za-z0-9-]{1,64}$/.test(instanceId)) {
  process.stderr.write(`Invalid instance ID: ${instanceId}\n`);
  process.exit(153);
}
if (env.FAKE_FC_EXIT_AT_START) {
  process.stderr.write(`${env.FAKE_FC_EXIT_AT_START}\n`);
  process.exit(1);
}
if (existsSync(apiSock)) {
  process.stderr.write(`Failed to open the API socket at: ${apiSock}. Check that it is not already used.\n`);
  process.exit(1);
}

// ---- strict body parsing -------------------------------------------------------------------

interface Field {
  readonly t: 'string' | 'boolean' | 'integer' | 'object' | 'array' | 'json';
  readonly req?: boolean;
  readonly since?: string;
  readonly fields?: Record<string, Field>;
  readonly items?: Field;
  /** Firecracker ignores unknown keys here (TokenBucket, override items, Metrics). */
  readonly lenient?: boolean;
  readonly values?: readonly string[];
}

const tokenBucket: Field = {
  t: 'object',
  lenient: true,
  fields: {
    size: { t: 'integer', req: true },
    one_time_burst: { t: 'integer' },
    refill_time: { t: 'integer', req: true },
  },
};
const rateLimiter: Field = { t: 'object', fields: { bandwidth: tokenBucket, ops: tokenBucket } };

const BODIES: Record<string, Field> = {
  'PUT /logger': {
    t: 'object',
    fields: {
      log_path: { t: 'string' },
      level: { t: 'string', values: ['error', 'warning', 'warn', 'info', 'debug', 'trace', 'off'] },
      show_level: { t: 'boolean' },
      show_log_origin: { t: 'boolean' },
      module: { t: 'string', since: '1.6.0' },
    },
  },
  'PUT /metrics': { t: 'object', lenient: true, fields: { metrics_path: { t: 'string', req: true } } },
  'PUT /boot-source': {
    t: 'object',
    fields: { kernel_image_path: { t: 'string', req: true }, initrd_path: { t: 'string' }, boot_args: { t: 'string' } },
  },
  'PUT /machine-config': {
    t: 'object',
    fields: {
      vcpu_count: { t: 'integer', req: true },
      mem_size_mib: { t: 'integer', req: true },
      smt: { t: 'boolean' },
      track_dirty_pages: { t: 'boolean' },
      huge_pages: { t: 'string', since: '1.7.0', values: ['None', '2M'] },
      cpu_template: { t: 'string' },
    },
  },
  'PUT /drives': {
    t: 'object',
    fields: {
      drive_id: { t: 'string', req: true },
      is_root_device: { t: 'boolean', req: true },
      partuuid: { t: 'string' },
      cache_type: { t: 'string', values: ['Unsafe', 'Writeback'] },
      is_read_only: { t: 'boolean' },
      path_on_host: { t: 'string' },
      rate_limiter: rateLimiter,
      io_engine: { t: 'string', values: ['Sync', 'Async'] },
      socket: { t: 'string' },
    },
  },
  'PATCH /drives': {
    t: 'object',
    fields: { drive_id: { t: 'string', req: true }, path_on_host: { t: 'string' }, rate_limiter: rateLimiter },
  },
  'PUT /network-interfaces': {
    t: 'object',
    fields: {
      iface_id: { t: 'string', req: true },
      host_dev_name: { t: 'string', req: true },
      guest_mac: { t: 'string' },
      mtu: { t: 'integer', since: '1.16.0' },
      rx_rate_limiter: rateLimiter,
      tx_rate_limiter: rateLimiter,
    },
  },
  'PUT /vsock': {
    t: 'object',
    fields: { guest_cid: { t: 'integer', req: true }, uds_path: { t: 'string', req: true }, vsock_id: { t: 'string' } },
  },
  'PUT /mmds/config': {
    t: 'object',
    fields: {
      network_interfaces: { t: 'array', req: true, items: { t: 'string' } },
      version: { t: 'string', values: ['V1', 'V2'] },
      ipv4_address: { t: 'string' },
      imds_compat: { t: 'boolean', since: '1.13.0' },
    },
  },
  'PUT /mmds': { t: 'json' },
  'PATCH /mmds': { t: 'json' },
  'PUT /entropy': { t: 'object', fields: { rate_limiter: rateLimiter } },
  'PUT /balloon': {
    t: 'object',
    fields: {
      amount_mib: { t: 'integer', req: true },
      deflate_on_oom: { t: 'boolean', req: true },
      stats_polling_interval_s: { t: 'integer' },
      free_page_hinting: { t: 'boolean', since: '1.14.0' },
      free_page_reporting: { t: 'boolean', since: '1.14.0' },
    },
  },
  'PATCH /balloon': { t: 'object', fields: { amount_mib: { t: 'integer', req: true } } },
  'PUT /actions': {
    t: 'object',
    fields: { action_type: { t: 'string', req: true, values: ['InstanceStart', 'SendCtrlAltDel', 'FlushMetrics'] } },
  },
  'PATCH /vm': { t: 'object', fields: { state: { t: 'string', req: true, values: ['Paused', 'Resumed'] } } },
  'PUT /snapshot/create': {
    t: 'object',
    fields: {
      snapshot_path: { t: 'string', req: true },
      mem_file_path: { t: 'string', req: true },
      snapshot_type: { t: 'string', values: ['Full', 'Diff'] },
    },
  },
  'PUT /snapshot/load': {
    t: 'object',
    fields: {
      snapshot_path: { t: 'string', req: true },
      mem_file_path: { t: 'string' },
      mem_backend: {
        t: 'object',
        fields: {
          backend_type: { t: 'string', req: true, values: ['File', 'Uffd'] },
          backend_path: { t: 'string', req: true },
        },
      },
      enable_diff_snapshots: { t: 'boolean' },
      track_dirty_pages: { t: 'boolean', since: '1.13.0' },
      resume_vm: { t: 'boolean' },
      network_overrides: {
        t: 'array',
        since: '1.12.0',
        items: {
          t: 'object',
          lenient: true,
          fields: { iface_id: { t: 'string', req: true }, host_dev_name: { t: 'string', req: true } },
        },
      },
      vsock_override: {
        t: 'object',
        since: '1.16.0',
        lenient: true,
        fields: { uds_path: { t: 'string', req: true } },
      },
      clock_realtime: { t: 'boolean', since: '1.16.0' },
    },
  },
};

class BadRequest extends Error {}

function deserializeError(detail: string): BadRequest {
  return new BadRequest(`An error occurred when deserializing the json body of a request: ${detail}.`);
}

function checkValue(value: unknown, field: Field, name: string): void {
  switch (field.t) {
    case 'json':
      return;
    case 'string':
      if (typeof value !== 'string') throw deserializeError(`invalid type for \`${name}\`, expected a string`);
      if (field.values && !field.values.includes(field.values[0] === 'error' ? value.toLowerCase() : value)) {
        throw deserializeError(`unknown variant \`${value}\`, expected one of ${field.values.join(', ')}`);
      }
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw deserializeError(`invalid type for \`${name}\`, expected a boolean`);
      return;
    case 'integer':
      if (!Number.isInteger(value) || (value as number) < 0) {
        throw deserializeError(`invalid type for \`${name}\`, expected an unsigned integer`);
      }
      return;
    case 'array':
      if (!Array.isArray(value)) throw deserializeError(`invalid type for \`${name}\`, expected a sequence`);
      for (const item of value) checkValue(item, field.items ?? { t: 'json' }, name);
      return;
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw deserializeError(`invalid type for \`${name}\`, expected a map`);
      }
      const known = Object.entries(field.fields ?? {}).filter(
        ([, f]) => f.since === undefined || versionAtLeast(f.since),
      );
      const knownNames = known.map(([key]) => key);
      for (const [key, child] of Object.entries(value)) {
        const spec = known.find(([k]) => k === key)?.[1];
        if (!spec) {
          if (field.lenient) continue;
          throw deserializeError(`unknown field \`${key}\`, expected one of \`${knownNames.join('`, `')}\``);
        }
        checkValue(child, spec, key);
      }
      for (const [key, spec] of known) {
        if (spec.req && !(key in value)) throw deserializeError(`missing field \`${key}\``);
      }
      return;
    }
  }
}

// ---- VM model ------------------------------------------------------------------------------

type Phase = 'fresh' | 'configuring' | 'running' | 'paused';
let phase: Phase = 'fresh';
const preBoot = () => phase === 'fresh' || phase === 'configuring';

interface FakeVm {
  kernel?: string;
  vcpus: number;
  memMib: number;
  hugepages: boolean;
  trackDirtyPages: boolean;
  drives: Map<string, { path: string; root: boolean; readOnly: boolean }>;
  ifaces: Map<string, { tap: string; mac?: string }>;
  vsockPath?: string;
  mmdsConfigured: boolean;
  mmds: unknown;
  metricsConfigured: boolean;
  balloon?: number;
}

const vm: FakeVm = {
  vcpus: 1,
  memMib: 128,
  hugepages: false,
  trackDirtyPages: false,
  drives: new Map(),
  ifaces: new Map(),
  mmdsConfigured: false,
  mmds: undefined,
  metricsConfigured: false,
};

const PRE_ONLY = 'The requested operation is not supported after starting the microVM.';
const POST_ONLY = 'The requested operation is not supported before starting the microVM.';

function serial(line: string): void {
  process.stdout.write(`${line}\n`);
}

// ---- hybrid vsock --------------------------------------------------------------------------

let vsockServer: Server | undefined;
const vsockConnections = new Set<Socket>();
let nextHostPort = 1073741824;
const guestPorts = new Set((env.FAKE_FC_GUEST_PORTS ?? '4998').split(',').filter(Boolean).map(Number));

function bindVsock(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (existsSync(path)) {
      reject(
        new BadRequest(
          `Cannot create backend for vsock device: UnixBind(Os { code: 98, kind: AddrInUse, message: "Address in use" })`,
        ),
      );
      return;
    }
    const server = createNetServer((socket) => handleVsockConnection(socket));
    server.once('error', (err) => reject(new BadRequest(`Cannot create backend for vsock device: ${err.message}`)));
    server.listen(path, () => {
      vsockServer?.close();
      vsockServer = server;
      resolve();
    });
  });
}

function handleVsockConnection(socket: Socket): void {
  vsockConnections.add(socket);
  socket.on('close', () => vsockConnections.delete(socket));
  socket.on('error', () => socket.destroy());
  let line = '';
  let connected = false;
  socket.on('data', (chunk) => {
    if (connected) {
      socket.write(chunk); // the "guest" echoes
      return;
    }
    line += chunk.toString('latin1');
    const newline = line.indexOf('\n');
    if (newline === -1) {
      if (line.length > 32) socket.destroy();
      return;
    }
    const match = /^connect (\d+)$/i.exec(line.slice(0, newline).trim());
    const rest = line.slice(newline + 1);
    if (!match) {
      socket.destroy();
      return;
    }
    if (phase !== 'running') {
      // A paused or not yet started guest never answers; Firecracker gives up after 2 s.
      setTimeout(() => socket.destroy(), 200);
      return;
    }
    if (!guestPorts.has(Number(match[1]))) {
      socket.destroy(); // the guest answered RST
      return;
    }
    connected = true;
    socket.write(`OK ${nextHostPort++}\n${env.FAKE_FC_GUEST_GREETING ?? ''}`);
    if (rest) socket.write(rest);
  });
}

function resetVsockConnections(): void {
  for (const socket of vsockConnections) socket.destroy();
}

// ---- snapshots -----------------------------------------------------------------------------

const VMSTATE_MARKER = 'fcvm-fake-firecracker-vmstate';

function createSnapshot(body: Record<string, unknown>): void {
  if (phase !== 'paused')
    throw new BadRequest('Operation not allowed: the microVM must be paused to create a snapshot.');
  const type = (body.snapshot_type as string | undefined) ?? 'Full';
  if (type === 'Diff' && !vm.trackDirtyPages && !versionAtLeast('1.13.0')) {
    throw new BadRequest('Diff snapshots are not allowed on uVMs with dirty page tracking disabled.');
  }
  const state = {
    marker: VMSTATE_MARKER,
    version: VERSION,
    memMib: vm.memMib,
    vcpus: vm.vcpus,
    hugepages: vm.hugepages,
    vsockPath: vm.vsockPath ?? null,
    ifaces: [...vm.ifaces].map(([id, iface]) => ({ id, ...iface })),
    drives: [...vm.drives].map(([id, drive]) => ({ id, ...drive })),
    mmdsConfigured: vm.mmdsConfigured,
    type,
  };
  writeFileSync(body.snapshot_path as string, JSON.stringify(state));
  const memoryPath = body.mem_file_path as string;
  const fd = openSync(memoryPath, existsSync(memoryPath) ? 'r+' : 'w');
  try {
    ftruncateSync(fd, vm.memMib * 1024 * 1024);
    writeSync(fd, Buffer.from(`fake guest memory of ${instanceId}\n`), 0, undefined, 0);
  } finally {
    closeSync(fd);
  }
  resetVsockConnections(); // Firecracker queues a vsock transport reset
}

type VmStateFile = {
  marker: string;
  memMib: number;
  vcpus: number;
  hugepages: boolean;
  vsockPath: string | null;
  ifaces: Array<{ id: string; tap: string; mac?: string }>;
  drives: Array<{ id: string; path: string; root: boolean; readOnly: boolean }>;
  mmdsConfigured: boolean;
};

async function loadSnapshot(body: Record<string, unknown>): Promise<void> {
  const hasBackend = body.mem_backend !== undefined;
  const hasFile = body.mem_file_path !== undefined;
  if (hasBackend === hasFile) {
    throw new BadRequest(
      hasBackend
        ? 'too many fields: either `mem_backend` or `mem_file_path` exclusively is required.'
        : 'missing field: either `mem_backend` or `mem_file_path` is required',
    );
  }
  let state: VmStateFile;
  try {
    state = JSON.parse(readFileSync(body.snapshot_path as string, 'utf8')) as VmStateFile;
  } catch (err) {
    throw new BadRequest(
      `Load snapshot error: Failed to restore from snapshot: Cannot open the snapshot file: ${(err as Error).message}`,
    );
  }
  if (state.marker !== VMSTATE_MARKER)
    throw new BadRequest('Load snapshot error: Failed to restore from snapshot: CRC64 mismatch');
  const backend = hasBackend
    ? (body.mem_backend as { backend_type: string; backend_path: string })
    : { backend_type: 'File', backend_path: body.mem_file_path as string };
  if (backend.backend_type === 'File') {
    if (state.hugepages) {
      throw new BadRequest('Cannot restore hugetlbfs backed snapshot by mapping the memory file. Please use uffd.');
    }
    let size: number;
    try {
      size = statSync(backend.backend_path).size;
    } catch (err) {
      throw new BadRequest(
        `Load snapshot error: Failed to restore from snapshot: Cannot load guest memory: ${(err as Error).message}`,
      );
    }
    if (size !== state.memMib * 1024 * 1024) throw new BadRequest('Load snapshot error: memory file size mismatch');
  } else {
    await new Promise<void>((resolve, reject) => {
      const socket = connect(backend.backend_path);
      socket.once('connect', () => {
        socket.write(
          JSON.stringify([{ base_host_virt_addr: 0, size: state.memMib * 1048576, offset: 0, page_size: 4096 }]),
        );
        resolve(); // kept open for the process's life, as Firecracker v1.12+ does
      });
      socket.once('error', (err) =>
        reject(new BadRequest(`Load snapshot error: UFFD handshake failed: ${err.message}`)),
      );
    });
  }
  const overrides = (body.network_overrides as Array<{ iface_id: string; host_dev_name: string }> | undefined) ?? [];
  for (const override of overrides) {
    const iface = state.ifaces.find((i) => i.id === override.iface_id);
    if (!iface)
      throw new BadRequest(`Load snapshot error: Invalid network configuration: unknown iface_id ${override.iface_id}`);
    iface.tap = override.host_dev_name;
  }
  const vsockOverride = body.vsock_override as { uds_path: string } | undefined;
  if (vsockOverride && state.vsockPath === null) {
    throw new BadRequest('Load snapshot error: vsock_override given but the snapshot has no vsock device');
  }
  for (const drive of state.drives) {
    if (!existsSync(drive.path))
      throw new BadRequest(`Load snapshot error: drive ${drive.id}: No such file or directory`);
  }
  const vsockPath = vsockOverride?.uds_path ?? state.vsockPath;
  if (vsockPath !== null) await bindVsock(vsockPath);
  vm.memMib = state.memMib;
  vm.vcpus = state.vcpus;
  vm.hugepages = state.hugepages;
  vm.trackDirtyPages = Boolean(body.track_dirty_pages ?? body.enable_diff_snapshots ?? false);
  vm.vsockPath = vsockPath ?? undefined;
  vm.mmdsConfigured = state.mmdsConfigured;
  for (const iface of state.ifaces)
    vm.ifaces.set(iface.id, { tap: iface.tap, ...(iface.mac ? { mac: iface.mac } : {}) });
  for (const drive of state.drives) vm.drives.set(drive.id, drive);
  phase = body.resume_vm === true ? 'running' : 'paused';
  serial(`fake-firecracker: restored ${instanceId} from ${body.snapshot_path as string}`);
}

// ---- request handling ----------------------------------------------------------------------

function requireFile(path: string, what: string): void {
  if (!existsSync(path)) throw new BadRequest(`${what}: No such file or directory (os error 2)`);
}

/** Marks boot-path configuration: after it, /snapshot/load is refused. */
function bootResource(): void {
  if (!preBoot()) throw new BadRequest(PRE_ONLY);
  phase = 'configuring';
}

async function handle(method: string, path: string, body: Record<string, unknown> | undefined): Promise<unknown> {
  const [, resource, id] = path.split('/');
  const nested = resource === 'mmds' || resource === 'snapshot';
  const route = `${method} /${resource}${nested && id ? `/${id}` : ''}`;
  switch (route) {
    case 'GET /':
      return {
        app_name: 'Firecracker',
        id: instanceId,
        state: preBoot() ? 'Not started' : phase === 'running' ? 'Running' : 'Paused',
        vmm_version: VERSION,
      };
    case 'GET /version':
      return { firecracker_version: VERSION };
    case 'GET /mmds':
      if (!preBoot() && !vm.mmdsConfigured && vm.mmds === undefined)
        throw new BadRequest('The MMDS data store is not initialized.');
      return vm.mmds ?? {};
    case 'PUT /logger':
      if (!preBoot()) throw new BadRequest(PRE_ONLY);
      return undefined;
    case 'PUT /metrics':
      if (!preBoot()) throw new BadRequest(PRE_ONLY);
      if (vm.metricsConfigured) throw new BadRequest('Reinitialization of metrics not allowed.');
      vm.metricsConfigured = true;
      return undefined;
    case 'PUT /boot-source':
      bootResource();
      requireFile(body!.kernel_image_path as string, 'Invalid kernel path');
      if (body!.initrd_path !== undefined) requireFile(body!.initrd_path as string, 'Invalid initrd path');
      vm.kernel = body!.kernel_image_path as string;
      return undefined;
    case 'PUT /machine-config': {
      bootResource();
      const vcpus = body!.vcpu_count as number;
      const mem = body!.mem_size_mib as number;
      if (vcpus < 1 || vcpus > 32)
        throw new BadRequest(
          'The vCPU number is invalid! The vCPU number can only be 1 or an even number when SMT is enabled.',
        );
      if (mem === 0 || (body!.huge_pages === '2M' && mem % 2 !== 0))
        throw new BadRequest('The memory size (MiB) is either 0, or not a multiple of the configured page size.');
      vm.vcpus = vcpus;
      vm.memMib = mem;
      vm.hugepages = body!.huge_pages === '2M';
      vm.trackDirtyPages = body!.track_dirty_pages === true;
      return undefined;
    }
    case 'PUT /drives': {
      bootResource();
      checkId(id, body!.drive_id);
      requireFile(body!.path_on_host as string, 'Unable to create the block device: BackingFile(Os { code: 2 })');
      if (body!.is_root_device === true && [...vm.drives.entries()].some(([other, d]) => d.root && other !== id)) {
        throw new BadRequest('A root block device already exists!');
      }
      vm.drives.set(id!, {
        path: body!.path_on_host as string,
        root: body!.is_root_device === true,
        readOnly: body!.is_read_only === true,
      });
      return undefined;
    }
    case 'PATCH /drives': {
      if (preBoot()) throw new BadRequest(POST_ONLY);
      checkId(id, body!.drive_id);
      const drive = vm.drives.get(id!);
      if (!drive) throw new BadRequest(`Unable to patch the block device: Invalid drive ID ${id}`);
      if (body!.path_on_host !== undefined) {
        requireFile(body!.path_on_host as string, 'Unable to patch the block device');
        drive.path = body!.path_on_host as string;
      }
      return undefined;
    }
    case 'PUT /network-interfaces': {
      bootResource();
      checkId(id, body!.iface_id);
      const tap = body!.host_dev_name as string;
      if (tap.length > 15)
        throw new BadRequest(`Could not create the network device: Open tap device failed: invalid name ${tap}`);
      vm.ifaces.set(id!, { tap, ...(typeof body!.guest_mac === 'string' ? { mac: body!.guest_mac } : {}) });
      return undefined;
    }
    case 'PUT /vsock':
      bootResource();
      if ((body!.guest_cid as number) < 3) throw new BadRequest('Invalid guest CID');
      await bindVsock(body!.uds_path as string);
      vm.vsockPath = body!.uds_path as string;
      return undefined;
    case 'PUT /mmds/config': {
      bootResource();
      const ifaces = body!.network_interfaces as string[];
      if (ifaces.length === 0)
        throw new BadRequest('The list of network interface IDs that allow forwarding MMDS requests is empty.');
      for (const iface of ifaces) {
        if (!vm.ifaces.has(iface))
          throw new BadRequest(
            `The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.`,
          );
      }
      vm.mmdsConfigured = true;
      return undefined;
    }
    case 'PUT /mmds':
      vm.mmds = body;
      return undefined;
    case 'PATCH /mmds':
      if (vm.mmds === undefined) throw new BadRequest('The MMDS data store is not initialized.');
      vm.mmds = { ...(vm.mmds as object), ...body };
      return undefined;
    case 'PUT /entropy':
      bootResource();
      return undefined;
    case 'PUT /balloon':
      bootResource();
      vm.balloon = body!.amount_mib as number;
      return undefined;
    case 'PATCH /balloon':
      if (preBoot()) throw new BadRequest(POST_ONLY);
      if (vm.balloon === undefined) throw new BadRequest('Invalid request: no balloon device');
      vm.balloon = body!.amount_mib as number;
      return undefined;
    case 'PUT /actions':
      switch (body!.action_type) {
        case 'InstanceStart':
          if (!preBoot()) throw new BadRequest(PRE_ONLY);
          if (!vm.kernel) throw new BadRequest('Cannot start microvm without kernel configuration.');
          phase = 'running';
          serial(`fake-firecracker: guest ${instanceId} booted with ${vm.vcpus} vCPUs and ${vm.memMib} MiB`);
          return undefined;
        case 'SendCtrlAltDel':
          if (preBoot()) throw new BadRequest(POST_ONLY);
          if (env.FAKE_FC_IGNORE_CTRL_ALT_DEL !== '1' && phase === 'running') {
            serial('fake-firecracker: guest rebooting on Ctrl-Alt-Del');
            setTimeout(() => process.exit(0), 50);
          }
          return undefined;
        default:
          if (preBoot()) throw new BadRequest(POST_ONLY);
          return undefined;
      }
    case 'PATCH /vm':
      if (preBoot()) throw new BadRequest(POST_ONLY);
      phase = body!.state === 'Paused' ? 'paused' : 'running';
      return undefined;
    case 'PUT /snapshot/create':
      if (preBoot()) throw new BadRequest(POST_ONLY);
      createSnapshot(body!);
      return undefined;
    case 'PUT /snapshot/load':
      if (!preBoot()) throw new BadRequest(PRE_ONLY);
      if (phase !== 'fresh')
        throw new BadRequest('Loading a microVM snapshot not allowed after configuring boot-specific resources.');
      try {
        await loadSnapshot(body!);
      } catch (err) {
        failedLoad = true; // Firecracker ends itself after answering a failed load.
        throw err;
      }
      return undefined;
    default:
      throw new BadRequest(`Invalid request method and/or path: ${method} ${path}.`);
  }
}

function checkId(pathId: string | undefined, bodyId: unknown): void {
  if (!pathId || !/^[A-Za-z0-9_]+$/.test(pathId)) throw new BadRequest(`Invalid ID: ${pathId}`);
  if (pathId !== bodyId) throw new BadRequest('The id from the path does not match the id from the body!');
}

let failedLoad = false;

function bodySpecFor(method: string, path: string): Field | undefined {
  const [, resource, sub] = path.split('/');
  const key =
    resource === 'mmds' || resource === 'snapshot'
      ? `${method} /${resource}${sub ? `/${sub}` : ''}`
      : `${method} /${resource}`;
  return BODIES[key];
}

function respond(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status, { Server: 'Firecracker API' });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    Server: 'Firecracker API',
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const path = req.url ?? '/';
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks).toString('utf8');
  let status = 204;
  let answer: unknown;
  let parsed: Record<string, unknown> | undefined;
  if (env.FAKE_FC_DIE_ON === `${method} ${path}`) {
    serial(`fake-firecracker: crashing on ${method} ${path}`);
    process.exit(3);
  }
  try {
    if (method === 'GET') {
      if (raw !== '') throw new BadRequest('GET request cannot have a body.');
    } else {
      // micro_http only knows Content-Length; a chunked body reads as empty.
      if (req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] === undefined || raw === '') {
        throw new BadRequest(`Empty ${method} request.`);
      }
      try {
        parsed = JSON.parse(raw) as Record<string, unknown>;
      } catch (err) {
        throw deserializeError((err as Error).message);
      }
      const spec = bodySpecFor(method, path);
      if (spec) checkValue(parsed, spec, 'body');
    }
    answer = await handle(method, path, parsed);
    if (answer !== undefined) status = 200;
  } catch (err) {
    if (!(err instanceof BadRequest)) throw err;
    status = 400;
    answer = { fault_message: err.message };
  }
  if (env.FAKE_FC_REQUEST_LOG) {
    appendFileSync(
      env.FAKE_FC_REQUEST_LOG,
      `${JSON.stringify({ method, path, body: parsed ?? null, status, answer: status === 400 ? answer : null })}\n`,
    );
  }
  respond(res, status, answer);
  if (failedLoad) {
    res.on('finish', () => {
      serial('fake-firecracker: snapshot load failed, exiting');
      process.exit(1);
    });
  }
}

const api = createServer((req, res) => {
  serve(req, res).catch((err: unknown) => {
    process.stderr.write(`fake-firecracker internal error: ${String(err)}\n`);
    process.exit(2);
  });
});
api.keepAliveTimeout = 0;
api.listen(apiSock, () =>
  serial(`fake-firecracker v${VERSION} ${instanceId} pid ${process.pid} listening on ${apiSock}`),
);
