/** Valid command lines parse to the expected typed requests (parsed in-process, nothing runs). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Command } from 'commander';
import { toExecRequest } from '../../../src/cli/commands/exec.js';
import { toRunRequest } from '../../../src/cli/commands/podman-run.js';
import { toSnapshotRunRequest } from '../../../src/cli/commands/snapshot-run.js';
import { buildProgram } from '../../../src/cli/main.js';

function findCommand(program: Command, path: string[]): Command {
  let command = program;
  for (const name of path) {
    const next = command.commands.find((c) => c.name() === name);
    assert.ok(next, `command ${path.join(' ')}`);
    command = next;
  }
  return command;
}

/** Parses argv with the command's action replaced by a capture of its arguments. */
async function capture(path: string[], args: string[]): Promise<unknown[]> {
  const program = buildProgram(() => {
    throw new Error('no context needed while parsing');
  });
  let captured: unknown[] = [];
  findCommand(program, path).action((...actionArgs: unknown[]) => {
    captured = actionArgs.slice(0, -1);
  });
  await program.parseAsync(['node', 'fcvm', ...path, ...args]);
  return captured;
}

async function runRequest(args: string[]) {
  const [image, trailing, raw] = await capture(['podman', 'run'], args);
  return toRunRequest(image as string, trailing as string[], raw as Parameters<typeof toRunRequest>[2]);
}

describe('podman run', () => {
  test('defaults', async () => {
    const request = await runRequest(['--name', 'web', 'localhost/fcvm-busybox']);
    assert.equal(request.name, 'web');
    assert.equal(request.image, 'localhost/fcvm-busybox');
    assert.deepEqual(request.command, []);
    assert.equal(request.vcpus, 2);
    assert.equal(request.memoryMib, 2048);
    assert.equal(request.network, 'rootless');
    assert.equal(request.hypervisor, 'auto');
    assert.equal(request.noSwap, false);
    assert.equal(request.rootfsSizeBytes, null);
  });

  test('flags before the image never swallow it; the container command keeps its own flags', async () => {
    const request = await runRequest([
      '--name',
      'web',
      '--publish',
      '8080:80',
      '--env',
      'A=1',
      '--map',
      '/tmp:/data:ro',
      'localhost/fcvm-busybox',
      'sh',
      '-c',
      'echo --name x; exit 7',
    ]);
    assert.equal(request.image, 'localhost/fcvm-busybox');
    assert.deepEqual(request.command, ['sh', '-c', 'echo --name x; exit 7']);
    assert.deepEqual(request.publish, [{ hostIp: null, hostPort: 8080, guestPort: 80, protocol: 'tcp' }]);
    assert.deepEqual(request.volumes, [{ hostPath: '/tmp', guestPath: '/data', readOnly: true }]);
  });

  test('-- separates the container command', async () => {
    const request = await runRequest(['--name', 'web', 'img', '--', 'ls', '-la']);
    assert.deepEqual(request.command, ['ls', '-la']);
  });

  test('repeated and comma-separated values are the same', async () => {
    const repeated = await runRequest([
      '--name',
      'w',
      '-p',
      '80:80',
      '-p',
      '127.0.0.1:443:443/tcp',
      '-p',
      '53:53/udp',
      'img',
    ]);
    const commas = await runRequest(['--name', 'w', '-p', '80:80,127.0.0.1:443:443/tcp,53:53/udp', 'img']);
    assert.deepEqual(repeated.publish, commas.publish);
    assert.deepEqual(commas.publish, [
      { hostIp: null, hostPort: 80, guestPort: 80, protocol: 'tcp' },
      { hostIp: '127.0.0.1', hostPort: 443, guestPort: 443, protocol: 'tcp' },
      { hostIp: null, hostPort: 53, guestPort: 53, protocol: 'udp' },
    ]);
  });

  test('env values may contain commas and equals signs', async () => {
    const request = await runRequest(['--name', 'w', '-e', 'A=1,2,B=x=y', '--env', 'C=', 'img']);
    assert.deepEqual(request.env, [
      ['A', '1,2'],
      ['B', 'x=y'],
      ['C', ''],
    ]);
  });

  test('IPv6 publish, labels, --cmd, sizes and switches', async () => {
    const request = await runRequest([
      '--name',
      'w',
      '-p',
      '[::1]:8080:80',
      '--label',
      'tier=web',
      '--cmd',
      `sh -c 'echo "a b"'`,
      '--rootfs-size',
      '512M',
      '--cpu',
      'unlimited',
      '--mem',
      '1024',
      '--hugepages',
      '--no-swap',
      '-i',
      '-t',
      '--hypervisor',
      'qemu',
      'img',
    ]);
    assert.deepEqual(request.publish, [{ hostIp: '::1', hostPort: 8080, guestPort: 80, protocol: 'tcp' }]);
    assert.deepEqual(request.labels, { tier: 'web' });
    assert.deepEqual(request.command, ['sh', '-c', 'echo "a b"']);
    assert.equal(request.rootfsSizeBytes, 512 * 2 ** 20);
    assert.equal(request.vcpus, 'unlimited');
    assert.equal(request.hugepages, true);
    assert.equal(request.noSwap, true);
    assert.equal(request.interactive, true);
    assert.equal(request.tty, true);
    assert.equal(request.hypervisor, 'qemu');
  });
});

describe('exec', () => {
  test('by name, command after --', async () => {
    const [argv, raw] = await capture(['exec'], ['--name', 'web', '--', 'cat', '/etc/os-release']);
    const request = toExecRequest(argv as string[], raw as Parameters<typeof toExecRequest>[1]);
    assert.deepEqual(request, {
      target: { name: 'web' },
      command: ['cat', '/etc/os-release'],
      inVm: false,
      interactive: false,
      tty: false,
      quiet: false,
    });
  });

  test('by pid in the VM with a shell string; -t implies -q', async () => {
    const [argv, raw] = await capture(['exec'], ['--pid', '42', '--vm', '-c', '-t', 'echo', '$HOME']);
    const request = toExecRequest(argv as string[], raw as Parameters<typeof toExecRequest>[1]);
    assert.deepEqual(request.target, { pid: 42 });
    assert.deepEqual(request.command, ['sh', '-c', 'echo $HOME']);
    assert.equal(request.inVm, true);
    assert.equal(request.quiet, true);
  });

  test('a bare shell on a terminal implies -it; not when stdin is a pipe or the command has arguments', async () => {
    const [argv, raw] = await capture(['exec'], ['--name', 'web', '--', '/bin/bash']);
    const onTerminal = toExecRequest(argv as string[], raw as Parameters<typeof toExecRequest>[1], true);
    assert.equal(onTerminal.tty, true);
    assert.equal(onTerminal.interactive, true);
    assert.equal(toExecRequest(argv as string[], raw as Parameters<typeof toExecRequest>[1], false).tty, false);
    const [argv2, raw2] = await capture(['exec'], ['--name', 'web', '--', 'sh', '-c', 'ls']);
    assert.equal(toExecRequest(argv2 as string[], raw2 as Parameters<typeof toExecRequest>[1], true).tty, false);
  });
});

describe('snapshot run', () => {
  test('from a memory server, with the seed change flags', async () => {
    const [raw] = await capture(
      ['snapshot', 'run'],
      ['--pid', '1234', '--name', 'clone1', '--no-dirty-tracking', '--no-swap'],
    );
    assert.deepEqual(toSnapshotRunRequest(raw as Parameters<typeof toSnapshotRunRequest>[0]), {
      source: { servePid: 1234 },
      name: 'clone1',
      exec: null,
      dirtyTracking: false,
      noSwap: true,
      hypervisor: 'auto',
    });
  });

  test('straight from the snapshot files', async () => {
    const [raw] = await capture(['snapshot', 'run'], ['--snapshot', 'web-warm', '--exec', 'echo hi']);
    const request = toSnapshotRunRequest(raw as Parameters<typeof toSnapshotRunRequest>[0]);
    assert.deepEqual(request.source, { snapshot: 'web-warm' });
    assert.equal(request.exec, 'echo hi');
    assert.equal(request.dirtyTracking, true);
  });
});
