/** Turns the agent's error answers into FcvmErrors with one clear sentence. */
import { parseWireErrorBody, type WireError } from '@fcvm/protocol';
import { FcvmError } from '../errors.js';

export function agentError(error: WireError): FcvmError {
  const message =
    error.code === 'PROTOCOL_VERSION'
      ? `The guest agent speaks another protocol version (${error.message}): boot the VM with this fcvm's agent, or recreate the snapshot with this fcvm.`
      : error.code === 'UNAUTHENTICATED'
        ? `The guest agent refused the session (${error.message}): the channel does not lead to this VM's agent.`
        : `fc-agent: ${error.message}`;
  return new FcvmError('AGENT', message, { context: { wireCode: error.code } });
}

export function agentErrorFromBody(status: number, body: Buffer): FcvmError {
  try {
    return agentError(parseWireErrorBody(JSON.parse(body.toString('utf8'))));
  } catch (err) {
    return new FcvmError('AGENT', `fc-agent answered with HTTP status ${status} and an unreadable body.`, {
      cause: err,
      context: { body: body.toString('utf8').slice(0, 500) },
    });
  }
}

/** The wire code (UNAUTHENTICATED, PROTOCOL_VERSION, ...) an agent error carries, if any. */
export function wireCodeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const context = (err as { context?: Record<string, unknown> }).context;
  const code = context?.wireCode;
  return typeof code === 'string' ? code : undefined;
}
