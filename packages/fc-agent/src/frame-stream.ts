/**
 * One interactive session (exec or container attach) seen from the agent: frames in from the
 * host's request body, frames out in the response body, with back-pressure on output.
 */
import type { ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import {
  decodeJsonPayload,
  encodeDataFrames,
  encodeJsonFrame,
  FRAMES_CONTENT_TYPE,
  type Frame,
  FrameDecoder,
  FrameType,
  HOST_FRAME_TYPES,
  type WireError,
} from '@fcvm/protocol';
import { describeError, logLine } from './log.js';

export class FrameStream {
  private readonly stream: ServerHttp2Stream;
  private readonly decoder = new FrameDecoder(HOST_FRAME_TYPES);
  /** Frames that arrived while nobody consumed them; delivered in order to the next consumer. */
  private readonly queued: Frame[] = [];
  private frameHandler: ((frame: Frame) => void) | null = null;
  private finished = false;
  /** Aborted when the host's side of the session is gone (stream reset, session broken). */
  readonly gone = new AbortController();

  constructor(stream: ServerHttp2Stream) {
    this.stream = stream;
    stream.respond({ ':status': 200, 'content-type': FRAMES_CONTENT_TYPE });
    stream.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.decoder.push(chunk);
      } catch (err) {
        this.fail({ code: 'BAD_MESSAGE', message: describeError(err) });
        return;
      }
      this.queued.push(...frames);
      this.deliverQueued();
    });
    stream.on('close', () => this.gone.abort());
    stream.on('error', (err) => logLine(`session stream: ${describeError(err)}`));
  }

  private deliverQueued(): void {
    while (this.frameHandler !== null && this.queued.length > 0) {
      const frame = this.queued.shift();
      if (frame !== undefined) this.frameHandler(frame);
    }
  }

  /** Frames from the host, in order; frames that arrived earlier are delivered first. */
  onFrame(handler: (frame: Frame) => void): void {
    this.frameHandler = handler;
    this.deliverQueued();
  }

  /** The first frame, which must be Start; its JSON payload is returned unparsed. Later frames stay queued. */
  firstStart(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.gone.signal.addEventListener('abort', () => reject(new Error('session closed before its start frame')));
      this.frameHandler = (frame) => {
        this.frameHandler = null;
        if (frame.type !== FrameType.Start) {
          reject(new Error(`the first frame must be Start, got 0x${frame.type.toString(16)}`));
          return;
        }
        try {
          resolve(decodeJsonPayload(frame));
        } catch (err) {
          reject(err);
        }
      };
      this.deliverQueued();
    });
  }

  /** Stops reading the host's frames (the process's stdin is full). */
  pauseInput(): void {
    this.stream.pause();
  }

  resumeInput(): void {
    this.stream.resume();
  }

  get isOpen(): boolean {
    return !this.finished && !this.gone.signal.aborted;
  }

  sendJson(type: FrameType, message: unknown): void {
    if (this.isOpen) this.stream.write(encodeJsonFrame(type, message));
  }

  /** Sends one chunk of output; false asks the producer to wait for `drained()`. */
  sendData(type: FrameType, chunk: Buffer): boolean {
    if (!this.isOpen) return true;
    let ok = true;
    for (const frame of encodeDataFrames(type, chunk)) ok = this.stream.write(frame);
    return ok;
  }

  drained(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.isOpen) return resolve();
      const done = (): void => {
        this.stream.off('drain', done);
        this.gone.signal.removeEventListener('abort', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.gone.signal.addEventListener('abort', done);
    });
  }

  /** Copies `source` into frames of `type` until it ends, pausing it while the host is slow. */
  async forward(source: Readable, type: FrameType): Promise<void> {
    try {
      for await (const chunk of source) {
        if (!this.sendData(type, chunk as Buffer)) await this.drained();
      }
    } catch (err) {
      logLine(`output of a session ended early: ${describeError(err)}`);
    }
  }

  /**
   * Last frame of a session: Exit or Error, then the response ends. Resolves true once the host has
   * received it and closed the stream cleanly, false when the stream broke first (or was closed).
   */
  finish(type: typeof FrameType.Exit | typeof FrameType.Error, message: unknown): Promise<boolean> {
    if (!this.isOpen) return Promise.resolve(false);
    this.stream.end(encodeJsonFrame(type, message));
    this.finished = true;
    return new Promise((resolve) => {
      const settle = (): void => resolve(this.stream.rstCode === 0);
      if (this.stream.closed) settle();
      else this.stream.once('close', settle);
    });
  }

  fail(error: WireError): void {
    void this.finish(FrameType.Error, error);
  }
}
