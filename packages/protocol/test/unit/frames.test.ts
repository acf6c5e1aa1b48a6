import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AGENT_FRAME_TYPES,
  encodeDataFrames,
  encodeFrame,
  encodeJsonFrame,
  FrameDecoder,
  FrameType,
  HOST_FRAME_TYPES,
  MAX_FRAME_PAYLOAD,
  MessageValidationError,
} from '../../src/index.js';

test('frames decode incrementally, one byte at a time', () => {
  const wire = Buffer.concat([
    encodeJsonFrame(FrameType.Start, { hello: 1 }),
    encodeFrame(FrameType.Stdin, Buffer.from('abc')),
    encodeFrame(FrameType.StdinEnd),
  ]);
  const decoder = new FrameDecoder(HOST_FRAME_TYPES);
  const frames = [];
  for (const byte of wire) frames.push(...decoder.push(Buffer.from([byte])));
  assert.deepEqual(
    frames.map((f) => [f.type, f.payload.toString()]),
    [
      [FrameType.Start, '{"hello":1}'],
      [FrameType.Stdin, 'abc'],
      [FrameType.StdinEnd, ''],
    ],
  );
  assert.equal(decoder.idle, true);
});

test('a frame sent the wrong way is rejected', () => {
  const decoder = new FrameDecoder(AGENT_FRAME_TYPES);
  assert.throws(() => decoder.push(encodeFrame(FrameType.Stdin, Buffer.from('x'))), MessageValidationError);
});

test('an oversized frame header is rejected before its payload arrives', () => {
  const header = Buffer.alloc(5);
  header.writeUInt8(FrameType.Stdout, 0);
  header.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 1);
  assert.throws(() => new FrameDecoder(AGENT_FRAME_TYPES).push(header), /exceeds/);
});

test('large output is split into frames of at most the maximum payload', () => {
  const frames = encodeDataFrames(FrameType.Stdout, Buffer.alloc(MAX_FRAME_PAYLOAD * 2 + 10));
  assert.equal(frames.length, 3);
  const decoder = new FrameDecoder(AGENT_FRAME_TYPES);
  const decoded = decoder.push(Buffer.concat(frames));
  assert.deepEqual(
    decoded.map((f) => f.payload.length),
    [MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD, 10],
  );
});
