/**
 * The contract between fcvm (host) and fc-agent (guest). This package imports nothing from
 * either side and has no runtime dependencies; both bundles include it.
 */
export const PROTOCOL_VERSION = 1;

/** Name of the virtio-serial port (QEMU) that carries the channel. */
export const AGENT_PORT_NAME = 'fcvm.agent';

/** vsock port (Firecracker) on which the agent listens for the host. */
export const AGENT_VSOCK_PORT = 4998;

/** Line the agent prints on the serial console once it runs; tests and logs look for it. */
export const AGENT_STARTED_MARKER = 'fc-agent: started';
