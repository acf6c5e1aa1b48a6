/** A second host process reaches the agent through the relay of the process that holds the channel. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { AgentClient } from '../../../src/agent/agent-client.js';
import { wireCodeOf } from '../../../src/agent/agent-error.js';
import { AgentRelay } from '../../../src/agent/agent-relay.js';
import { AgentFixture, captureIo, stdinOf, TestTerminal } from './agent-harness.js';

describe('agent relay', { timeout: 30_000 }, () => {
  let agent: AgentFixture;
  let upstream: AgentClient;
  let relay: AgentRelay;
  const clients: AgentClient[] = [];

  before(async () => {
    agent = await AgentFixture.start();
    upstream = await agent.connect();
    relay = await AgentRelay.listen(upstream, join(agent.socketPath, '..', 'relay.sock'), agent.token);
  });
  after(async () => {
    for (const client of clients) client.destroy();
    await relay.close();
    await agent.dispose();
  });

  async function viaRelay(token = agent.token): Promise<AgentClient> {
    const socket = net.connect(relay.socketPath);
    await new Promise((resolve) => socket.once('connect', resolve));
    const client = await AgentClient.connect(socket, { token });
    clients.push(client);
    return client;
  }

  test('exec with pipes, stdin and exit code goes through the relay', async () => {
    const client = await viaRelay();
    assert.equal(client.hello.bootId, upstream.hello.bootId);
    const io = captureIo();
    const exit = await client.exec(
      {
        command: ['sh', '-c', 'echo out; echo err >&2; exit 7'],
        inVm: true,
        interactive: false,
        env: {},
        workdir: null,
      },
      io,
    );
    assert.equal(exit.exitCode, 7);
    assert.equal(io.stdoutText(), 'out\n');
    assert.equal(io.stderrText(), 'err\n');
    const cat = captureIo({ stdin: stdinOf('relayed stdin\n') });
    await client.exec({ command: ['cat'], inVm: true, interactive: true, env: {}, workdir: null }, cat);
    assert.equal(cat.stdoutText(), 'relayed stdin\n');
  });

  test('a TTY exec is interrupted by Ctrl-C through the relay', async () => {
    const client = await viaRelay();
    const stdin = new PassThrough();
    const io = captureIo({ stdin, terminal: new TestTerminal({ rows: 24, cols: 80 }) });
    const exit = client.exec(
      { command: ['sh', '-c', 'echo sleeping; exec sleep 100'], inVm: true, interactive: true, env: {}, workdir: null },
      io,
    );
    await io.waitForStdout('sleeping');
    stdin.write('\x03');
    assert.equal((await exit).exitCode, 130);
  });

  test('the relay checks the VM token itself', async () => {
    await assert.rejects(viaRelay('wrong'), (err: unknown) => wireCodeOf(err) === 'UNAUTHENTICATED');
  });

  test('agent errors come back unchanged', async () => {
    const client = await viaRelay();
    await assert.rejects(
      client.exec({ command: ['true'], inVm: false, interactive: false, env: {}, workdir: null }, captureIo()),
      (err: unknown) => wireCodeOf(err) === 'CONFLICT',
    );
  });
});
