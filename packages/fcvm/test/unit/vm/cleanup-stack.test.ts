import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CleanupStack } from '../../../src/vm/cleanup-stack.js';

test('releases run in reverse order, a failing step does not stop the rest, and dispose runs once', async () => {
  const stack = new CleanupStack();
  const order: string[] = [];
  stack.defer('first', () => {
    order.push('first');
  });
  stack.defer('broken', () => {
    throw new Error('boom');
  });
  stack.defer('last', async () => {
    order.push('last');
  });
  await Promise.all([stack.dispose(), stack.dispose()]);
  await stack.dispose();
  assert.deepEqual(order, ['last', 'first']);
  assert.throws(() => stack.defer('late', () => {}), /already started/);
});
