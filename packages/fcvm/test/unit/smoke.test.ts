import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitShellWords } from '../../src/cli/commands/podman-run.js';

test('splitShellWords handles quotes', () => {
  assert.deepEqual(splitShellWords(`sh -c 'echo "a b"'`), ['sh', '-c', 'echo "a b"']);
});
