/**
 * The host client against the real agent server (in its own process, on this host, over a Unix
 * socket): handshake, exec sessions in pipes and TTY mode, broken streams, the container run
 * session. Container commands run on the host here (no podman); see fc-agent/test/support.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { AGENT_AUTHORITY, PROTOCOL_VERSION, Route, startHostChannel } from '@fcvm/protocol';
import { AgentClient } from '../../../src/agent/agent-client.js';
import { wireCodeOf } from '../../../src/agent/agent-error.js';
import { isFcvmError } from '../../../src/errors.js';
import { AgentFixture, captureIo, planFor, stdinOf, TestTerminal } from './agent-harness.js';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const vmExec = { inVm: true, interactive: false, env: {}, workdir: null } as const;

describe('handshake', { timeout: 30_000 }, () => {
  let agent: AgentFixture;
  before(async () => {
    agent = await AgentFixture.start();
  });
  after(() => agent.dispose());

  test('a wrong token is rejected', async () => {
    await assert.rejects(agent.connect({ token: 'not-the-token' }), (err: unknown) => {
      assert.ok(isFcvmError(err));
      assert.equal(err.code, 'AGENT');
      assert.equal(wireCodeOf(err), 'UNAUTHENTICATED');
      assert.match(err.message, /refused the session/);
      return true;
    });
  });

  test('requests without a hello are refused', async () => {
    const channel = await agent.openStream();
    await startHostChannel(channel, PROTOCOL_VERSION);
    const session = http2.connect(AGENT_AUTHORITY, { createConnection: () => channel });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const request = session.request({ ':method': 'GET', ':path': Route.Status });
        request.on('response', (headers) => resolve(Number(headers[':status'])));
        request.on('error', reject);
        request.resume();
      });
      assert.equal(status, 401);
    } finally {
      session.destroy();
    }
  });

  test('a protocol version mismatch is a clear error', async () => {
    await assert.rejects(agent.connect({ protocolVersion: PROTOCOL_VERSION + 1 }), (err: unknown) => {
      assert.ok(isFcvmError(err));
      assert.equal(wireCodeOf(err), 'PROTOCOL_VERSION');
      assert.match(err.message, /another protocol version .*protocol version 1, the host speaks 2/);
      return true;
    });
  });

  test('hello reports the agent and runs the restore sequence once per new epoch', async () => {
    const first = await agent.connect();
    assert.equal(first.hello.protocolVersion, PROTOCOL_VERSION);
    assert.equal(first.hello.restored, false);
    assert.equal(first.hello.phase, 'waiting-plan');
    const restored = await agent.connect({ restoreEpoch: 1 });
    assert.equal(restored.hello.restored, true);
    assert.equal(restored.hello.bootId, first.hello.bootId);
    const again = await agent.connect({ restoreEpoch: 1 });
    assert.equal(again.hello.restored, false);
    assert.equal((await again.status()).restoreEpoch, 1);
    assert.equal(agent.log.match(/restore: epoch 1/g)?.length, 1);
  });
});

describe('exec in the VM', { timeout: 30_000 }, () => {
  let agent: AgentFixture;
  before(async () => {
    agent = await AgentFixture.start();
  });
  after(() => agent.dispose());

  test('pipes keep stdout and stderr apart and return the exit code', async () => {
    const client = await agent.connect();
    const io = captureIo();
    const exit = await client.exec({ ...vmExec, command: ['sh', '-c', 'echo out; echo err >&2; exit 7'] }, io);
    assert.deepEqual(exit, { exitCode: 7, signal: null });
    assert.equal(io.stdoutText(), 'out\n');
    assert.equal(io.stderrText(), 'err\n');
  });

  test('stdin is piped to the command', async () => {
    const client = await agent.connect();
    const io = captureIo({ stdin: stdinOf('hello through stdin\n') });
    const exit = await client.exec({ ...vmExec, interactive: true, command: ['cat'] }, io);
    assert.equal(exit.exitCode, 0);
    assert.equal(io.stdoutText(), 'hello through stdin\n');
  });

  test('a missing program is a clear error', async () => {
    const client = await agent.connect();
    await assert.rejects(client.exec({ ...vmExec, command: ['/nonexistent/program'] }, captureIo()), (err: unknown) => {
      assert.ok(isFcvmError(err));
      assert.equal(wireCodeOf(err), 'SPAWN_FAILED');
      assert.match(err.message, /cannot start \/nonexistent\/program/);
      return true;
    });
  });

  test('a TTY session gets a terminal', async () => {
    const client = await agent.connect();
    const io = captureIo({ terminal: new TestTerminal({ rows: 24, cols: 80 }) });
    const exit = await client.exec({ ...vmExec, command: ['tty'] }, io);
    assert.equal(exit.exitCode, 0);
    assert.match(io.stdoutText(), /^\/dev\/pts\/\d+\r\n$/);
  });

  test('a Ctrl-C byte interrupts sleep 100 promptly', async () => {
    const client = await agent.connect();
    const stdin = new PassThrough();
    const io = captureIo({ stdin, terminal: new TestTerminal({ rows: 24, cols: 80 }) });
    const started = Date.now();
    const exit = client.exec(
      { ...vmExec, interactive: true, command: ['sh', '-c', 'echo sleeping; exec sleep 100'] },
      io,
    );
    await io.waitForStdout('sleeping');
    stdin.write('\x03');
    const report = await exit;
    assert.equal(report.exitCode, 130);
    assert.ok(Date.now() - started < 10_000, 'sleep was interrupted');
  });

  test('window-size changes reach the terminal', async () => {
    const client = await agent.connect();
    const terminal = new TestTerminal({ rows: 24, cols: 80 });
    const io = captureIo({ stdin: new PassThrough(), terminal });
    const script = 'stty size; trap "stty size; exit 0" WINCH; echo waiting; while :; do sleep 0.05; done';
    const exit = client.exec({ ...vmExec, interactive: true, command: ['sh', '-c', script] }, io);
    await io.waitForStdout('waiting');
    terminal.resize({ rows: 40, cols: 100 });
    assert.equal((await exit).exitCode, 0);
    assert.match(io.stdoutText(), /^24 80\r\nwaiting\r\n40 100\r\n$/);
  });

  test('a broken stream kills its command and the next session is served', async () => {
    const socket = await agent.openStream();
    const client = await AgentClient.connect(socket, { token: agent.token });
    const io = captureIo();
    const exit = client.exec({ ...vmExec, command: ['sh', '-c', 'echo $$; exec sleep 100'] }, io);
    await io.waitForStdout('\n');
    const pid = Number(io.stdoutText().trim());
    assert.ok(processAlive(pid));
    socket.destroy();
    await assert.rejects(exit, (err: unknown) => isFcvmError(err) && err.code === 'AGENT');
    await waitUntil(() => !processAlive(pid), 5000, `pid ${pid} to be killed`);

    const next = await agent.connect();
    const nextIo = captureIo();
    assert.equal((await next.exec({ ...vmExec, command: ['echo', 'still serving'] }, nextIo)).exitCode, 0);
    assert.equal(nextIo.stdoutText(), 'still serving\n');
  });

  test('exec in the container before it runs is refused', async () => {
    const client = await agent.connect();
    await assert.rejects(client.exec({ ...vmExec, inVm: false, command: ['true'] }, captureIo()), (err: unknown) => {
      assert.equal(wireCodeOf(err), 'CONFLICT');
      return true;
    });
  });
});

describe('container run session', { timeout: 60_000 }, () => {
  test('output streams stay apart, the exit code comes back, poweroff ends the agent', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await agent.connect();
    await client.sendPlan(planFor(['sh', '-c', 'echo out; echo err >&2; exit 7']));
    const notices: string[] = [];
    const io = { ...captureIo(), onNotice: (n: { kind: string }) => notices.push(n.kind) };
    const exit = await client.attach(io);
    assert.deepEqual(exit, { exitCode: 7, signal: null });
    assert.equal(io.stdoutText(), 'out\n');
    assert.equal(io.stderrText(), 'err\n');
    assert.ok(notices.includes('started'));
    const status = await client.status();
    assert.equal(status.phase, 'exited');
    assert.equal(status.exitCode, 7);
    assert.match(agent.log, /setup: hostname test-vm/);
    await client.poweroff();
    assert.equal(await agent.exited, 0);
  });

  test('stdin sent with the first attach reaches the container once it starts', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await agent.connect();
    await client.sendPlan(planFor(['cat'], { interactive: true }));
    const io = captureIo({ stdin: stdinOf('early input\n') });
    const exit = await client.attach(io);
    assert.equal(exit.exitCode, 0);
    assert.equal(io.stdoutText(), 'early input\n');
  });

  test('a plan that cannot start its container fails the run session with the reason', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await agent.connect();
    await client.sendPlan(planFor(['/nonexistent/entrypoint']));
    await assert.rejects(client.attach(captureIo()), (err: unknown) => {
      assert.equal(wireCodeOf(err), 'PLAN_FAILED');
      assert.match((err as Error).message, /cannot start \/nonexistent\/entrypoint/);
      return true;
    });
    const status = await client.status();
    assert.equal(status.phase, 'failed');
    assert.equal(status.health, 'stopped');
  });

  test('a second plan is refused', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await agent.connect();
    await client.sendPlan(planFor(['true']));
    await assert.rejects(client.sendPlan(planFor(['true'])), (err: unknown) => wireCodeOf(err) === 'CONFLICT');
  });

  test('the container survives a broken session and a new attach takes over', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const first = await agent.connect();
    await first.sendPlan(
      planFor(['sh', '-c', 'echo ready; read line; echo "got $line"; exit 3'], { interactive: true }),
    );
    const firstIo = captureIo({ stdin: new PassThrough() });
    const firstRun = first.attach(firstIo);
    await firstIo.waitForStdout('ready');
    first.destroy();
    await assert.rejects(firstRun);

    const second = await agent.connect();
    assert.equal(second.hello.phase, 'running');
    const io = captureIo({ stdin: stdinOf('hello\n') });
    const exit = await second.attach(io);
    assert.equal(exit.exitCode, 3);
    assert.equal(io.stdoutText(), 'got hello\n');
  });

  test('a TTY container run gets a terminal of the host size', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await agent.connect();
    await client.sendPlan(planFor(['sh', '-c', 'tty >/dev/null && stty size'], { tty: true }));
    const io = captureIo({ terminal: new TestTerminal({ rows: 33, cols: 77 }) });
    const exit = await client.attach(io);
    assert.equal(exit.exitCode, 0);
    assert.equal(io.stdoutText(), '33 77\r\n');
  });
});
