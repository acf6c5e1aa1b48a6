/**
 * Liveness of the channel (protocol/liveness.ts, AgentClient): a silent agent is noticed within the
 * bound and named in the error; an attach whose channel breaks reconnects and still gets the exit.
 * Bounds are shortened here (ping every 100 ms, silent after 1 s); the real ones are in
 * docs/agent-channel.md.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { AgentClient } from '../../../src/agent/agent-client.js';
import { AgentFixture, captureIo, planFor } from './agent-harness.js';

const liveness = { intervalMs: 100, silentMs: 1000 };
const vmExec = { inVm: true, interactive: false, env: {}, workdir: null } as const;

describe('channel liveness', { timeout: 20_000 }, () => {
  test('a silent agent fails a running exec with an error naming the silent side', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await agent.connect({ liveness, peer: 'the test agent', diagnostics: 'see its log' });
    const io = captureIo();
    const running = client.exec({ ...vmExec, command: ['sh', '-c', 'echo ready; sleep 100'] }, io);
    await io.waitForStdout('ready');
    const stoppedAt = Date.now();
    agent.signal('SIGSTOP');
    await assert.rejects(
      running,
      /the test agent answered nothing on its channel for \d+ s .*went silent; see its log\./,
    );
    const noticedAfter = Date.now() - stoppedAt;
    assert.ok(noticedAfter < 5_000, `noticed after ${noticedAfter} ms`);
    agent.signal('SIGCONT');
  });

  test('an attach whose channel breaks reconnects and collects the exit', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const first: net.Socket = await agent.openStream();
    const client = await AgentClient.connect(first, {
      token: agent.token,
      liveness,
      reopen: () => agent.openStream(),
    });
    t.after(() => client.destroy());
    await client.sendPlan(planFor(['sh', '-c', 'echo ready; read line; exit 5'], { interactive: true }));
    const stdin = new PassThrough();
    const io = captureIo({ stdin });
    const running = client.attach(io);
    await io.waitForStdout('ready');
    first.destroy();
    // The re-attached session carries stdin again: the container gets its line and exits.
    setTimeout(() => stdin.write('go\n'), 500).unref();
    const exit = await running;
    assert.equal(exit.exitCode, 5);
  });

  test('an attach to an agent that stays silent gives up with one error', async (t) => {
    const agent = await AgentFixture.start();
    t.after(() => agent.dispose());
    const client = await AgentClient.connect(await agent.openStream(), {
      token: agent.token,
      liveness,
      timeoutMs: 1000,
      reconnectTimeoutMs: 1000,
      diagnostics: 'see its log',
      reopen: () => agent.openStream(),
    });
    t.after(() => client.destroy());
    await client.sendPlan(planFor(['sh', '-c', 'echo ready; sleep 100']));
    const io = captureIo();
    const running = client.attach(io);
    await io.waitForStdout('ready');
    agent.signal('SIGSTOP');
    await assert.rejects(
      running,
      /fc-agent in the guest did not take a new session after its channel failed; see its log\./,
    );
    agent.signal('SIGCONT');
  });
});
