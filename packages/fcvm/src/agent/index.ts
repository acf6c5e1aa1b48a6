/** The host's side of the fc-agent channel; independent of the VMM (give it any byte stream). */
export { AgentClient, type ConnectOptions, connectWithRetry, type RetryOptions } from './agent-client.js';
export { agentError, wireCodeOf } from './agent-error.js';
export { AgentRelay, type HostRouteHandler, RelayHostRoute } from './agent-relay.js';
export { type LocalTerminal, type SessionIo, ttyTerminal } from './session-io.js';
