/**
 * One HTTP/1.1 exchange with Firecracker's API server over its Unix socket. Firecracker's server
 * delimits bodies only by Content-Length (a chunked body is read as empty and its bytes as a new
 * request), so every body goes out with an explicit Content-Length. Every exchange has a deadline.
 */
import { request } from 'node:http';
import { errnoCode, FcvmError, isFcvmError } from '../../errors.js';

export type HttpMethod = 'GET' | 'PUT' | 'PATCH';

export interface ApiExchange {
  readonly method: HttpMethod;
  readonly path: string;
  /** Serialized JSON; omitted for GET. */
  readonly body?: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

export interface ApiResponse {
  readonly status: number;
  readonly deprecation: boolean;
  readonly body: string;
}

/** Context key that marks a failure to talk to the socket at all (vs. an answer we did not like). */
export const TRANSPORT_FAILURE = 'transportFailure';

export function exchange(socketPath: string, call: ApiExchange): Promise<ApiResponse> {
  const what = `${call.method} ${call.path}`;
  const deadline = AbortSignal.timeout(call.timeoutMs);
  const signal = call.signal ? AbortSignal.any([deadline, call.signal]) : deadline;
  const headers: Record<string, string> = { Host: 'localhost', Accept: 'application/json' };
  const payload = call.body === undefined ? undefined : Buffer.from(call.body, 'utf8');
  if (payload) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(payload.length);
  }

  return new Promise<ApiResponse>((resolve, reject) => {
    const req = request({ socketPath, method: call.method, path: call.path, headers, agent: false, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => reject(transportError(socketPath, what, err, call, deadline)));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          deprecation: res.headers.deprecation === 'true',
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', (err) => reject(transportError(socketPath, what, err, call, deadline)));
    req.end(payload);
  });
}

function transportError(
  socketPath: string,
  what: string,
  err: Error,
  call: ApiExchange,
  deadline: AbortSignal,
): FcvmError {
  const context = { [TRANSPORT_FAILURE]: true, socketPath, errno: errnoCode(err) };
  if (deadline.aborted) {
    return new FcvmError(
      'HYPERVISOR',
      `Firecracker did not answer ${what} within ${Math.round(call.timeoutMs / 100) / 10} s.`,
      { cause: err, context },
    );
  }
  if (call.signal?.aborted) {
    return new FcvmError('HYPERVISOR', `${what} to Firecracker was cancelled.`, { cause: err, context });
  }
  return new FcvmError(
    'HYPERVISOR',
    `Could not talk to Firecracker's API socket ${socketPath} for ${what}: ${errnoCode(err) ?? err.message}.`,
    { cause: err, context },
  );
}

export function isTransportFailure(err: unknown): boolean {
  return isFcvmError(err) && err.context[TRANSPORT_FAILURE] === true;
}
