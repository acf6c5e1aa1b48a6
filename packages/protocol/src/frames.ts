/**
 * Frames of the interactive sessions (exec, container attach). Each such session is one HTTP/2
 * stream; its request body and response body are each a sequence of frames:
 *
 *   offset  size  field
 *   0       1     type (FrameType)
 *   1       4     payload length, unsigned big-endian, at most MAX_FRAME_PAYLOAD
 *   5       n     payload (bytes for STDIN/STDOUT/STDERR, UTF-8 JSON for the others)
 *
 * Host -> agent types are 0x0_, agent -> host types are 0x1_, so a frame sent the wrong way is
 * caught by the decoder instead of being misread.
 */
import { MessageValidationError } from './guards.js';

export const FrameType = {
  /** host->agent, first frame, JSON ExecSpec or AttachSpec. */
  Start: 0x01,
  /** host->agent, bytes for the process's stdin. */
  Stdin: 0x02,
  /** host->agent, empty: close the process's stdin. */
  StdinEnd: 0x03,
  /** host->agent, JSON TerminalSize. */
  Resize: 0x04,
  /** agent->host, JSON {}: the process runs. */
  Started: 0x11,
  /** agent->host, bytes the process wrote to stdout (the terminal's output with a TTY). */
  Stdout: 0x12,
  /** agent->host, bytes the process wrote to stderr (never sent with a TTY). */
  Stderr: 0x13,
  /** agent->host, JSON ExitReport; the last frame of a session. */
  Exit: 0x14,
  /** agent->host, JSON WireError; the last frame of a session that failed. */
  Error: 0x15,
  /** agent->host, JSON Notice (phase changes, health). */
  Notice: 0x16,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const HOST_FRAME_TYPES: readonly FrameType[] = [
  FrameType.Start,
  FrameType.Stdin,
  FrameType.StdinEnd,
  FrameType.Resize,
];
export const AGENT_FRAME_TYPES: readonly FrameType[] = [
  FrameType.Started,
  FrameType.Stdout,
  FrameType.Stderr,
  FrameType.Exit,
  FrameType.Error,
  FrameType.Notice,
];

export const FRAME_HEADER_SIZE = 5;
/** Bounds memory per frame; writers split larger output. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;

export interface Frame {
  readonly type: FrameType;
  readonly payload: Buffer;
}

export function encodeFrame(type: FrameType, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) {
    throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payload.length);
  frame.writeUInt8(type, 0);
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, FRAME_HEADER_SIZE);
  return frame;
}

export function encodeJsonFrame(type: FrameType, message: unknown): Buffer {
  return encodeFrame(type, Buffer.from(JSON.stringify(message), 'utf8'));
}

/** Splits a byte chunk into as many frames as MAX_FRAME_PAYLOAD requires. */
export function encodeDataFrames(type: FrameType, data: Uint8Array): Buffer[] {
  const frames: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += MAX_FRAME_PAYLOAD) {
    frames.push(encodeFrame(type, data.subarray(offset, offset + MAX_FRAME_PAYLOAD)));
  }
  return frames;
}

export function decodeJsonPayload(frame: Frame): unknown {
  try {
    return JSON.parse(frame.payload.toString('utf8'));
  } catch {
    throw new MessageValidationError(`frame 0x${frame.type.toString(16)}`, 'must carry valid JSON');
  }
}

/**
 * Incremental decoder: feed it chunks as they arrive, it returns the complete frames.
 * States: reading a header (need FRAME_HEADER_SIZE bytes) or reading a payload (need `length`).
 */
export class FrameDecoder {
  private readonly allowed: readonly FrameType[];
  private pending: Buffer = Buffer.alloc(0);
  private header: { type: FrameType; length: number } | null = null;

  /** `allowed`: the frame types this side may receive (HOST_FRAME_TYPES or AGENT_FRAME_TYPES). */
  constructor(allowed: readonly FrameType[]) {
    this.allowed = allowed;
  }

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    for (;;) {
      if (this.header === null) {
        if (this.pending.length < FRAME_HEADER_SIZE) break;
        const type = this.pending.readUInt8(0);
        const length = this.pending.readUInt32BE(1);
        if (!(this.allowed as readonly number[]).includes(type)) {
          throw new MessageValidationError('frame', `type 0x${type.toString(16)} is not expected here`);
        }
        if (length > MAX_FRAME_PAYLOAD) {
          throw new MessageValidationError('frame', `payload of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
        }
        this.header = { type: type as FrameType, length };
        this.pending = this.pending.subarray(FRAME_HEADER_SIZE);
      }
      if (this.pending.length < this.header.length) break;
      frames.push({ type: this.header.type, payload: Buffer.from(this.pending.subarray(0, this.header.length)) });
      this.pending = this.pending.subarray(this.header.length);
      this.header = null;
    }
    return frames;
  }

  /** True when no partial frame is buffered (a stream may end here cleanly). */
  get idle(): boolean {
    return this.header === null && this.pending.length === 0;
  }
}
