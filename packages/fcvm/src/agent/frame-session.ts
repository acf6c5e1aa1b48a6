/**
 * Runs one interactive session (exec or container attach) on an HTTP/2 stream: sends the Start
 * frame, forwards stdin and terminal resizes, writes Stdout/Stderr frames to the local streams with
 * back-pressure, and settles with the remote process's exit report.
 */
import type { ClientHttp2Stream } from 'node:http2';
import type { Writable } from 'node:stream';
import {
  AGENT_FRAME_TYPES,
  decodeJsonPayload,
  type ExitReport,
  encodeDataFrames,
  encodeFrame,
  encodeJsonFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  parseExitReport,
  parseNotice,
  parseWireError,
} from '@fcvm/protocol';
import { FcvmError } from '../errors.js';
import { agentError, agentErrorFromBody } from './agent-error.js';
import type { SessionIo } from './session-io.js';

export function runFrameSession(stream: ClientHttp2Stream, start: unknown, io: SessionIo): Promise<ExitReport> {
  const cleanups: (() => void)[] = [];
  const decoder = new FrameDecoder(AGENT_FRAME_TYPES);
  stream.write(encodeJsonFrame(FrameType.Start, start));

  cleanups.push(...forwardInput(stream, io));

  return new Promise<ExitReport>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      for (const cleanup of cleanups.splice(0)) cleanup();
      if ('exit' in outcome) {
        stream.end();
        resolve(outcome.exit);
      } else {
        stream.destroy();
        reject(outcome.error);
      }
    };
    const handle = (frame: Frame): void => handleFrame(frame, stream, io, settle);
    // A non-200 answer carries a JSON error body instead of frames.
    let errorStatus: number | null = null;
    const errorBody: Buffer[] = [];
    stream.on('response', (headers) => {
      const status = Number(headers[':status']);
      if (status !== 200) errorStatus = status;
    });
    stream.on('end', () => {
      if (errorStatus !== null) settle({ error: agentErrorFromBody(errorStatus, Buffer.concat(errorBody)) });
    });
    stream.on('data', (chunk: Buffer) => {
      if (errorStatus !== null) {
        errorBody.push(chunk);
        return;
      }
      try {
        for (const frame of decoder.push(chunk)) handle(frame);
      } catch (err) {
        settle({
          error: new FcvmError('AGENT', 'fc-agent sent a malformed session frame.', { cause: err }),
        });
      }
    });
    stream.on('error', (err) => {
      settle({
        error: new FcvmError('AGENT', `The channel to fc-agent broke: ${err.message}`, {
          cause: err,
          context: { channel: 'broken' },
        }),
      });
    });
    stream.on('close', () => {
      settle({
        error: new FcvmError('AGENT', 'The channel to fc-agent closed before the command exited.', {
          context: { channel: 'broken' },
        }),
      });
    });
  });
}

/** Sends stdin and terminal resizes as frames; returns what stops that. */
function forwardInput(stream: ClientHttp2Stream, io: SessionIo): (() => void)[] {
  const cleanups: (() => void)[] = [];
  if (io.terminal !== null) {
    cleanups.push(
      io.terminal.onResize((size) => {
        if (!stream.destroyed) stream.write(encodeJsonFrame(FrameType.Resize, size));
      }),
    );
  }
  const stdin = io.stdin;
  if (stdin !== null) {
    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      let ok = true;
      for (const frame of encodeDataFrames(FrameType.Stdin, bytes)) ok = stream.write(frame);
      if (!ok) {
        stdin.pause();
        stream.once('drain', () => stdin.resume());
      }
    };
    const onEnd = (): void => {
      if (!stream.destroyed) stream.write(encodeFrame(FrameType.StdinEnd));
    };
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    // An earlier session on the same stdin (before a re-attach) paused it; 'data' alone would not resume.
    stdin.resume();
    cleanups.push(() => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.pause();
    });
  }
  return cleanups;
}

type Outcome = { exit: ExitReport } | { error: Error };

/** One frame from the agent: output to the local streams (with back-pressure), notices, the end. */
function handleFrame(frame: Frame, stream: ClientHttp2Stream, io: SessionIo, settle: (outcome: Outcome) => void): void {
  const writeOut = (target: Writable, payload: Buffer): void => {
    if (!target.write(payload)) {
      stream.pause();
      target.once('drain', () => stream.resume());
    }
  };
  switch (frame.type) {
    case FrameType.Stdout:
      writeOut(io.stdout, frame.payload);
      break;
    case FrameType.Stderr:
      writeOut(io.stderr, frame.payload);
      break;
    case FrameType.Started:
      io.onStarted?.();
      break;
    case FrameType.Notice:
      io.onNotice?.(parseNotice(decodeJsonPayload(frame)));
      break;
    case FrameType.Exit:
      settle({ exit: parseExitReport(decodeJsonPayload(frame)) });
      break;
    case FrameType.Error:
      settle({ error: agentError(parseWireError(decodeJsonPayload(frame))) });
      break;
    default:
      throw new Error(`unexpected frame 0x${frame.type.toString(16)}`);
  }
}
