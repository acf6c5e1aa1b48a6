/** QmpClient against a scripted QMP server on a Unix socket (the protocol as QEMU 7.2 speaks it). */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isFcvmError } from '../../../../src/errors.js';
import { QmpClient } from '../../../../src/hypervisor/qemu/qmp-client.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fcvm-qmp-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Reply = (command: { execute: string; arguments?: unknown; id?: string }, socket: net.Socket) => void;

/** A QMP server: greets, then answers each command line with `reply`. Records what it received. */
async function fakeQemu(socketPath: string, reply: Reply): Promise<{ server: net.Server; received: string[] }> {
  const received: string[] = [];
  const server = net.createServer((socket) => {
    socket.write(
      `${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 } }, capabilities: [] } })}\r\n`,
    );
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        received.push(line);
        reply(JSON.parse(line), socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { server, received };
}

const never = new Promise<never>(() => {});

test('negotiates capabilities, matches replies by id, interleaved with events', async () => {
  const socketPath = path.join(dir, 'ok.sock');
  const { server, received } = await fakeQemu(socketPath, (command, socket) => {
    if (command.execute === 'qmp_capabilities') {
      socket.write(`${JSON.stringify({ return: {}, id: command.id })}\r\n`);
    } else if (command.execute === 'query-status') {
      // An event first, and the reply split across two writes.
      socket.write(`${JSON.stringify({ event: 'RESUME', timestamp: { seconds: 1, microseconds: 2 } })}\r\n`);
      const text = `${JSON.stringify({ return: { status: 'running', running: true }, id: command.id })}\r\n`;
      socket.write(text.slice(0, 10));
      setTimeout(() => socket.write(text.slice(10)), 10);
    } else {
      socket.write(
        `${JSON.stringify({ error: { class: 'CommandNotFound', desc: `The command ${command.execute} has not been found` }, id: command.id })}\r\n`,
      );
    }
  });
  try {
    const qmp = await QmpClient.connect(socketPath, { timeoutMs: 5000, processExited: never });
    const events: string[] = [];
    qmp.onEvent((event) => events.push(event));
    assert.deepEqual(await qmp.execute('query-status'), { status: 'running', running: true });
    assert.deepEqual(events, ['RESUME'], 'events reach their listeners');
    await assert.rejects(qmp.execute('no-such-command', { a: 1 }), (err: unknown) => {
      assert.ok(isFcvmError(err));
      assert.equal(err.code, 'HYPERVISOR');
      assert.equal(err.message, 'QEMU refused no-such-command: The command no-such-command has not been found');
      return true;
    });
    assert.deepEqual(
      received.map((line) => JSON.parse(line)),
      [
        { execute: 'qmp_capabilities', id: '1' },
        { execute: 'query-status', id: '2' },
        { execute: 'no-such-command', arguments: { a: 1 }, id: '3' },
      ],
    );
    qmp.close();
  } finally {
    server.close();
  }
});

test('a closed connection fails pending and later commands', async () => {
  const socketPath = path.join(dir, 'close.sock');
  const { server } = await fakeQemu(socketPath, (command, socket) => {
    if (command.execute === 'qmp_capabilities') socket.write(`${JSON.stringify({ return: {}, id: command.id })}\n`);
    else socket.destroy();
  });
  try {
    const qmp = await QmpClient.connect(socketPath, { timeoutMs: 5000, processExited: never });
    await assert.rejects(qmp.execute('stop'), /did not answer stop: its control connection closed/);
    assert.equal(qmp.isOpen, false);
    await assert.rejects(qmp.execute('cont'), /did not run cont: its control connection is closed/);
  } finally {
    server.close();
  }
});

test('waits for the socket to appear, and gives up when the process has exited', async () => {
  const late = path.join(dir, 'late.sock');
  const connecting = QmpClient.connect(late, { timeoutMs: 5000, processExited: never });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const { server } = await fakeQemu(late, (command, socket) => {
    socket.write(`${JSON.stringify({ return: {}, id: command.id })}\n`);
  });
  try {
    (await connecting).close();
  } finally {
    server.close();
  }

  await assert.rejects(
    QmpClient.connect(path.join(dir, 'never.sock'), { timeoutMs: 5000, processExited: Promise.resolve() }),
    /QEMU exited before its control socket answered/,
  );
});
