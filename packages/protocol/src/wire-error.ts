/**
 * Errors as they cross the channel: a stable code (match on it) and one sentence for the user.
 * The HTTP status that carries each code is fixed here so both sides agree.
 */
import { expectObject, expectOneOf, expectString } from './guards.js';

export const WIRE_ERROR_CODES = [
  /** No successful hello on this session, or a wrong token. */
  'UNAUTHENTICATED',
  /** The two sides speak different protocol versions. */
  'PROTOCOL_VERSION',
  /** A message failed validation. */
  'BAD_MESSAGE',
  /** No such route. */
  'NOT_FOUND',
  /** The request does not fit the agent's phase (a second plan, exec before the container runs). */
  'CONFLICT',
  /** The command could not be started (not found, not executable). */
  'SPAWN_FAILED',
  /** Carrying out the plan failed (image load, podman run). */
  'PLAN_FAILED',
  /** The session was taken over by a newer one (container attach after a reconnect). */
  'SUPERSEDED',
  'INTERNAL',
] as const;
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

export const WIRE_ERROR_STATUS: Readonly<Record<WireErrorCode, number>> = {
  UNAUTHENTICATED: 401,
  PROTOCOL_VERSION: 400,
  BAD_MESSAGE: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  SPAWN_FAILED: 500,
  PLAN_FAILED: 500,
  SUPERSEDED: 409,
  INTERNAL: 500,
};

export interface WireError {
  readonly code: WireErrorCode;
  readonly message: string;
}

/** Error responses have the body `{"error": WireError}`. */
export function parseWireErrorBody(input: unknown): WireError {
  const o = expectObject(input, 'body', ['error']);
  return parseWireError(o.error);
}

export function parseWireError(input: unknown): WireError {
  const o = expectObject(input, 'error', ['code', 'message']);
  return {
    code: expectOneOf(o.code, 'error.code', WIRE_ERROR_CODES),
    message: expectString(o.message, 'error.message'),
  };
}
