import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { connectWithRetry } from '../../../src/agent/agent-client.js';
import { wireCodeOf } from '../../../src/agent/agent-error.js';
import { AgentFixture } from './agent-harness.js';

let agent: AgentFixture;
before(async () => {
  agent = await AgentFixture.start();
});
after(() => agent.dispose());

test('channel failures are retried until the agent answers', { timeout: 20_000 }, async () => {
  let attempts = 0;
  const client = await connectWithRetry(
    async () => {
      attempts++;
      if (attempts < 3) {
        const socket = net.connect(agent.socketPath);
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.destroy();
        return socket;
      }
      return agent.openStream();
    },
    { token: agent.token, deadlineMs: 10_000 },
  );
  assert.equal(attempts, 3);
  assert.equal(client.hello.phase, 'waiting-plan');
  client.destroy();
});

test('a refusal by the agent is not retried', { timeout: 20_000 }, async () => {
  let attempts = 0;
  await assert.rejects(
    connectWithRetry(
      () => {
        attempts++;
        return agent.openStream();
      },
      { token: 'wrong', deadlineMs: 10_000 },
    ),
    (err: unknown) => wireCodeOf(err) === 'UNAUTHENTICATED',
  );
  assert.equal(attempts, 1);
});

test('the deadline bounds the attempts', { timeout: 20_000 }, async () => {
  const started = Date.now();
  await assert.rejects(
    connectWithRetry(async () => deadStreamLocal(), { token: agent.token, deadlineMs: 1000 }),
    /Could not reach fc-agent in 1 s/,
  );
  assert.ok(Date.now() - started < 5000);
});

async function deadStreamLocal(): Promise<net.Socket> {
  const socket = net.connect(agent.socketPath);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.destroy();
  return socket;
}
