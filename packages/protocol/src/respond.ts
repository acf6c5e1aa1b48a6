/**
 * JSON answers on an HTTP/2 server stream, shared by the two servers of the protocol: the agent and
 * the host's relay. Only types come from node:http2, so the package stays free of runtime dependencies.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { JSON_CONTENT_TYPE } from './routes.js';
import { WIRE_ERROR_STATUS, type WireError } from './wire-error.js';

/** Answers once; a stream that is gone or already answered is left alone. */
export function respondJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ':status': status, 'content-type': JSON_CONTENT_TYPE });
  stream.end(JSON.stringify(body));
}

export function respondWireError(stream: ServerHttp2Stream, error: WireError): void {
  respondJson(stream, WIRE_ERROR_STATUS[error.code], { error });
}
