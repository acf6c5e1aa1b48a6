/**
 * HTTP/2 routes of the channel. The host is the HTTP/2 client, the agent the server; one HTTP/2
 * session per host connection. Unary routes carry JSON bodies (content-type application/json);
 * session routes carry frames (frames.ts) in both directions on one stream.
 */
export const Route = {
  /** POST HelloRequest -> HelloResponse. Must be the first request of every session. */
  Hello: '/v1/hello',
  /** GET -> AgentStatus. */
  Status: '/v1/status',
  /** POST BootPlan -> 202 {}. Accepted once per boot; the agent then prepares and starts the container. */
  Plan: '/v1/plan',
  /** POST frames: AttachSpec, stdin, resize -> notices, stdout, stderr, exit. The container's run session. */
  Attach: '/v1/container/attach',
  /** POST frames: ExecSpec, stdin, resize -> started, stdout, stderr, exit. */
  Exec: '/v1/exec',
  /** POST {} -> 202 {}: the host has what it needs; the agent removes the container and powers off. */
  Poweroff: '/v1/poweroff',
} as const;
export type Route = (typeof Route)[keyof typeof Route];

/** Media type of session bodies. */
export const FRAMES_CONTENT_TYPE = 'application/vnd.fcvm.frames';
export const JSON_CONTENT_TYPE = 'application/json';
/** Authority the host uses in requests; the agent ignores it. */
export const AGENT_AUTHORITY = 'http://fc-agent';
