/**
 * The one check every server of the protocol (the agent, the host's relay) makes on a hello: the
 * VM token (compared in constant time) and the protocol version. Returns the error to answer with,
 * or null when the session may go on.
 */
import { timingSafeEqual } from 'node:crypto';
import type { HelloRequest } from './messages.js';
import { PROTOCOL_VERSION } from './version.js';
import type { WireError } from './wire-error.js';

export function helloRejection(hello: HelloRequest, expectedToken: string, server: string): WireError | null {
  const given = Buffer.from(hello.token, 'utf8');
  const expected = Buffer.from(expectedToken, 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { code: 'UNAUTHENTICATED', message: 'the VM token is wrong' };
  }
  if (hello.protocolVersion !== PROTOCOL_VERSION) {
    return {
      code: 'PROTOCOL_VERSION',
      message: `${server} speaks protocol version ${PROTOCOL_VERSION}, the host speaks ${hello.protocolVersion}`,
    };
  }
  return null;
}
