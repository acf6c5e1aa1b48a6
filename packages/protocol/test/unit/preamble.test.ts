import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodePreamble, isWholePreamble, PreambleScanner } from '../../src/index.js';

const nonce = '0123456789abcdef0123456789abcdef';

test('the scanner skips stale bytes before the preamble and keeps what follows', () => {
  const scanner = new PreambleScanner(nonce);
  assert.equal(scanner.push(Buffer.from('stale http2 bytes\x00\x01')), null);
  const wire = Buffer.concat([encodePreamble({ protocolVersion: 1, nonce }), Buffer.from('PRI * HTTP/2.0')]);
  assert.equal(scanner.push(wire.subarray(0, 20)), null);
  const found = scanner.push(wire.subarray(20));
  assert.deepEqual(found?.preamble, { protocolVersion: 1, nonce });
  assert.equal(found?.rest.toString(), 'PRI * HTTP/2.0');
});

test('the host ignores an echo of another nonce', () => {
  const scanner = new PreambleScanner(nonce);
  const other = encodePreamble({ protocolVersion: 1, nonce: 'f'.repeat(32) });
  assert.equal(scanner.push(other), null);
  assert.notEqual(scanner.push(encodePreamble({ protocolVersion: 1, nonce })), null);
});

test('a whole preamble is recognised only on its own', () => {
  const line = encodePreamble({ protocolVersion: 1, nonce });
  assert.equal(isWholePreamble(line), true);
  assert.equal(isWholePreamble(Buffer.concat([Buffer.from('x'), line])), false);
  assert.equal(isWholePreamble(Buffer.concat([line, Buffer.from('x')])), false);
});
