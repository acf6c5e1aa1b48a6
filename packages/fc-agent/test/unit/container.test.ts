import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BootPlan } from '@fcvm/protocol';
import { declaresHealthcheck, execArgv, loadArgv, parseLoadedImage, runArgv } from '../../src/container.js';

const plan: BootPlan = {
  hostname: 'vm',
  image: { kind: 'archive', format: 'docker-archive', path: '/run/fcvm/image.tar' },
  imageReference: null,
  command: ['sh', '-c', 'echo $HOME'],
  env: { A: '1', B: 'x=y' },
  user: '1000:1000',
  workdir: '/srv',
  tty: true,
  interactive: true,
  network: { kind: 'none' },
  hostTimeMs: 0,
  ntpSources: [],
};

test('podman run gets the plan as separate argv words', () => {
  assert.deepEqual(runArgv(plan, 'localhost/fcvm-busybox:latest'), [
    'podman',
    '--cgroup-manager=cgroupfs',
    '--events-backend=file',
    'run',
    '--name',
    'fcvm-container',
    '--network=host',
    '--log-driver=k8s-file',
    '--ulimit',
    'nofile=65536:65536',
    '--interactive',
    '--tty',
    '--init',
    '--env',
    'A=1',
    '--env',
    'B=x=y',
    '--user',
    '1000:1000',
    '--workdir',
    '/srv',
    'localhost/fcvm-busybox:latest',
    'sh',
    '-c',
    'echo $HOME',
  ]);
});

test('-t alone also attaches stdin, so keys such as Ctrl-C reach the terminal', () => {
  const argv = runArgv({ ...plan, interactive: false, tty: true }, 'img');
  assert.ok(argv.includes('--interactive') && argv.includes('--tty') && argv.includes('--init'));
});

test('a plain run has neither -i nor -t and keeps the image default command', () => {
  const argv = runArgv(
    { ...plan, tty: false, interactive: false, command: null, env: {}, user: null, workdir: null },
    'img',
  );
  assert.ok(!argv.includes('--tty') && !argv.includes('--interactive'));
  assert.equal(argv.at(-1), 'img');
});

test('exec targets the one container; a terminal implies -i', () => {
  const argv = execArgv({
    command: ['ls', '/'],
    inVm: false,
    interactive: false,
    terminal: { rows: 2, cols: 3 },
    env: {},
    workdir: null,
  });
  assert.deepEqual(argv.slice(3), ['exec', '--interactive', '--tty', 'fcvm-container', 'ls', '/']);
});

test('archives are loaded by path', () => {
  assert.deepEqual(loadArgv({ kind: 'archive', format: 'oci-archive', path: '/dev/vdb' }).slice(3), [
    'load',
    '--input',
    '/dev/vdb',
  ]);
});

test('the loaded image name is read from podman load output', () => {
  assert.equal(
    parseLoadedImage('Getting image source signatures\nLoaded image: localhost/fcvm-busybox:latest\n'),
    'localhost/fcvm-busybox:latest',
  );
  assert.equal(parseLoadedImage('Loaded image(s): localhost/a:1,localhost/b:2\n'), 'localhost/a:1');
  assert.equal(parseLoadedImage('nothing here'), null);
});

test('a HEALTHCHECK is read from podman image inspect output, wherever podman puts it', () => {
  const podmanStyle = JSON.stringify([{ Id: 'x', Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 1 } }]);
  assert.equal(declaresHealthcheck(podmanStyle), true);
  const dockerStyle = JSON.stringify([{ Config: { Healthcheck: { Test: ['CMD', 'true'] } } }]);
  assert.equal(declaresHealthcheck(dockerStyle), true);
  assert.equal(declaresHealthcheck(JSON.stringify([{ Id: 'x', Config: { Cmd: ['sh'] } }])), false);
  assert.equal(declaresHealthcheck(JSON.stringify([{ Healthcheck: { Test: ['NONE'] } }])), false);
  assert.equal(declaresHealthcheck('not json'), null);
});
