/**
 * JSON requests and answers on an HTTP/2 server stream, shared by the two servers of the protocol:
 * the agent and the host's relay. Only types come from node:http2, so the package stays free of runtime dependencies.
 */
import type { Http2Session, ServerHttp2Stream } from 'node:http2';
import { MessageValidationError } from './guards.js';
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

/** Reads a request body of at most `maxBytes` as JSON ({} when empty); MessageValidationError otherwise. */
export async function readJsonBody(stream: ServerHttp2Stream, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new MessageValidationError('body', `exceeds ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return text === '' ? {} : JSON.parse(text);
  } catch {
    throw new MessageValidationError('body', 'must be valid JSON');
  }
}

/** The answer to any request before a successful hello on its session: 401, then the session closes. */
export function refuseUnauthenticated(stream: ServerHttp2Stream, session: Http2Session): void {
  respondWireError(stream, { code: 'UNAUTHENTICATED', message: 'the session has not said hello with the VM token' });
  session.close();
}
