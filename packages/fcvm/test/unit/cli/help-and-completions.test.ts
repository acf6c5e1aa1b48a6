import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { runCli } from '../../helpers/cli.js';

describe('help, version and completions', () => {
  test('--help lists every command', () => {
    const { status, stdout } = runCli(['--help']);
    assert.equal(status, 0);
    for (const command of ['podman', 'exec', 'ls', 'snapshot', 'snapshots', 'setup', 'completions']) {
      assert.match(stdout, new RegExp(`^  ${command}\\b`, 'm'));
    }
  });

  test('podman run --help lists its flags', () => {
    const { status, stdout } = runCli(['podman', 'run', '--help']);
    assert.equal(status, 0);
    for (const flag of [
      '--name',
      '--cpu',
      '--mem',
      '--publish',
      '--map',
      '--env',
      '--network',
      '--hypervisor',
      '--no-swap',
      '--tty',
    ]) {
      assert.ok(stdout.includes(flag), flag);
    }
  });

  test('snapshot run --help lists its flags', () => {
    const { status, stdout } = runCli(['snapshot', 'run', '--help']);
    assert.equal(status, 0);
    for (const flag of [
      '--pid',
      '--snapshot',
      '--name',
      '--exec',
      '--no-dirty-tracking',
      '--no-swap',
      '--hypervisor',
    ]) {
      assert.ok(stdout.includes(flag), flag);
    }
  });

  test('--version prints the package version', () => {
    const { status, stdout } = runCli(['--version']);
    assert.equal(status, 0);
    assert.match(stdout.trim(), /^\d+\.\d+\.\d+/);
  });

  for (const shell of ['bash', 'zsh', 'fish'] as const) {
    test(`completions ${shell} prints a script naming the commands and flags`, () => {
      const { status, stdout } = runCli(['completions', shell]);
      assert.equal(status, 0);
      assert.match(stdout, /fcvm/);
      assert.ok(stdout.includes('snapshot'));
      assert.ok(stdout.includes('no-dirty-tracking'));
    });
  }

  test('the bash script is valid bash and completes subcommands', () => {
    const script = runCli(['completions', 'bash']).stdout;
    const probe = `${script}\nCOMP_WORDS=(fcvm snapshot r); COMP_CWORD=2; _fcvm_complete; echo "\${COMPREPLY[*]}"`;
    const result = spawnSync('bash', ['-c', probe], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'run');
  });
});
