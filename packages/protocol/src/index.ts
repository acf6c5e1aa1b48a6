/**
 * The contract between fcvm (host) and fc-agent (guest). This package imports nothing from either
 * side and has no runtime dependencies; both bundles include it.
 *
 * Transport: one byte stream per host session (Firecracker: hybrid vsock to AGENT_VSOCK_PORT;
 * QEMU: the virtio-serial port AGENT_PORT_NAME, /dev/virtio-ports/fcvm.agent in the guest). On it
 * first comes the channel preamble (preamble.ts: one line each way that marks where the session
 * starts), then HTTP/2 (node:http2, cleartext, prior knowledge): the host is the client, the agent
 * the server.
 * A broken stream ends the session; the agent then waits for the next one. A snapshot restore always
 * breaks the stream, and the next hello carries a new restoreEpoch.
 *
 * Wire format:
 *
 *   route                  method  request body              response body                 notes
 *   /v1/hello              POST    HelloRequest (JSON)       HelloResponse (JSON)          first request; 401 bad token,
 *                                                                                          400 PROTOCOL_VERSION mismatch
 *   /v1/status             GET     -                         AgentStatus (JSON)
 *   /v1/plan               POST    BootPlan (JSON)           202 {}                        once per boot, else 409
 *   /v1/container/attach   POST    frames: Start(AttachSpec) frames: Notice*, Started,     newest attach wins; older
 *                                  Stdin*, StdinEnd, Resize  Stdout*, Stderr*, Exit|Error  ones end with SUPERSEDED
 *   /v1/exec               POST    frames: Start(ExecSpec)   frames: Started, Stdout*,     process killed when the
 *                                  Stdin*, StdinEnd, Resize  Stderr*, Exit|Error           stream breaks
 *   /v1/poweroff           POST    {}                        202 {}                        container removed, VM off
 *
 *   before all: host sends "FCVM-CHANNEL <version> <nonce>\n", agent echoes it; bytes before it are dropped
 *   errors: non-2xx status with {"error": {"code": WireErrorCode, "message": "..."}} (wire-error.ts)
 *   frame:  [type u8][length u32 BE][payload], payload <= 1 MiB (frames.ts)
 *
 * Session lifecycle (agent side):
 *
 *   wait for stream --> hello --(token ok, version ok)--> [restore sequence if restoreEpoch is new]
 *        ^                 \--(bad token / version)--> error response, session closed
 *        |                                                   |
 *        +---------- stream ends or breaks <-- serve requests <--+
 */
export { PROTOCOL_VERSION } from './version.js';

/** Name of the virtio-serial port (QEMU) that carries the channel. */
export const AGENT_PORT_NAME = 'fcvm.agent';

/** vsock port (Firecracker) on which the agent listens for the host. */
export const AGENT_VSOCK_PORT = 4998;

/** Line the agent prints on the serial console once it runs; tests and logs look for it. */
export const AGENT_STARTED_MARKER = 'fc-agent: started';

/** Guest directory the host injects per-VM files into (the agent bundle, the token). */
export const GUEST_RUN_DIR = '/run/fcvm';
/** Guest file holding the per-VM token the host must present in its hello. */
export const GUEST_TOKEN_PATH = '/run/fcvm/token';

/** Name of the one container the agent runs. */
export const CONTAINER_NAME = 'fcvm-container';

export * from './channel-start.js';
export * from './frames.js';
export * from './guards.js';
export * from './hello-check.js';
export * from './liveness.js';
export * from './messages.js';
export * from './preamble.js';
export * from './respond.js';
export * from './routes.js';
export * from './wire-error.js';
