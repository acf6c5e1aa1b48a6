import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { quoteForShell, scriptArgv } from '../../src/pty.js';

test('arguments survive the shell quoting that script(1) needs', () => {
  const words = ["it's", '$HOME', '"q"', 'a b', '', '\\n', '`id`'];
  const out = execFileSync('sh', ['-c', `printf '%s\\n' ${words.map(quoteForShell).join(' ')}`], { encoding: 'utf8' });
  assert.deepEqual(out.split('\n').slice(0, -1), words);
});

test('script sets the initial size and execs the program', () => {
  const argv = scriptArgv(['echo', 'a b'], { rows: 10, cols: 20 });
  assert.deepEqual(argv.slice(0, 4), ['script', '--quiet', '--return', '--command']);
  assert.equal(argv[4], "stty rows 10 cols 20 2>/dev/null; exec 'echo' 'a b'");
});
