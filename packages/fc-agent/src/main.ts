/**
 * fc-agent, the guest agent. Bundled to one file and run by the guest's Node from the guest init
 * (`node /run/fcvm/fc-agent.mjs`); the init powers the VM off when the agent exits, so "power off"
 * here means: close the channel and exit.
 *
 *   fc-agent [--port /dev/virtio-ports/fcvm.agent] [--token-file /run/fcvm/token]
 *   fc-agent --listen-unix PATH --token-file FILE     (development: serve a Unix socket on this host)
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { AGENT_PORT_NAME, AGENT_STARTED_MARKER, GUEST_TOKEN_PATH, PROTOCOL_VERSION } from '@fcvm/protocol';
import { serveUnixSocket, serveVirtioPort } from './channel.js';
import { setClockFromHost, startChrony } from './clock.js';
import { runCommand } from './command.js';
import { PodmanRuntime } from './container.js';
import { describeError, logLine } from './log.js';
import { configureNetwork, setHostname } from './network.js';
import { type GuestSetup, PlanRunner } from './plan.js';
import { runRestoreSequence } from './restore.js';
import { AgentServer } from './server.js';

export const AGENT_VERSION = '0.1.0';
const DEFAULT_PORT_PATH = `/dev/virtio-ports/${AGENT_PORT_NAME}`;
const PORT_WAIT_MS = 10_000;

const guestSetup: GuestSetup = {
  setHostname,
  setClock: setClockFromHost,
  configureNetwork: (plan) => configureNetwork(plan.network),
  startTimeSync: async (plan) => {
    // A VM without network still runs chronyd so a restore can step the clock through it.
    try {
      await startChrony(plan.network.kind === 'none' ? [] : plan.ntpSources);
    } catch (err) {
      logLine(`time sync not started: ${describeError(err)}`);
    }
  },
};

async function waitForPort(path: string): Promise<void> {
  if (existsSync(path)) return;
  await runCommand(['modprobe', 'virtio_console']).catch((err: unknown) => {
    logLine(`modprobe virtio_console: ${describeError(err)}`);
  });
  const deadline = Date.now() + PORT_WAIT_MS;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear; is the VM's virtio-serial port configured?`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: DEFAULT_PORT_PATH },
      'token-file': { type: 'string', default: GUEST_TOKEN_PATH },
      'listen-unix': { type: 'string' },
    },
  });
  process.stderr.write(`${AGENT_STARTED_MARKER} protocol=${PROTOCOL_VERSION} node=${process.version}\n`);
  const token = (await readFile(values['token-file'], 'utf8')).trim();
  if (token === '') throw new Error(`${values['token-file']} is empty: the host must inject the VM token`);

  const stop = new AbortController();
  const plan = new PlanRunner(new PodmanRuntime(), guestSetup, () => stop.abort());
  const server = new AgentServer({
    token,
    agentVersion: AGENT_VERSION,
    plan,
    onRestore: (hello) =>
      runRestoreSequence({ hostTimeMs: hello.hostTimeMs, network: plan.currentPlan?.network ?? null }),
  });
  const serve = (stream: import('node:stream').Duplex): Promise<void> => server.serveSession(stream);

  const unixPath = values['listen-unix'];
  if (unixPath !== undefined) {
    const close = await serveUnixSocket(unixPath, serve);
    logLine(`listening on ${unixPath}`);
    await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
    await close();
  } else {
    await waitForPort(values.port);
    // The port loop ends when stop aborts after its current read; don't wait for a host that never comes.
    void serveVirtioPort(values.port, serve, stop.signal).catch((err: unknown) => {
      logLine(`channel failed: ${describeError(err)}`);
      stop.abort();
    });
    await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
  }
  server.closeSessions();
  plan.dispose();
  logLine('exiting: the VM powers off');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    logLine(`fatal: ${describeError(err)}`);
    process.exit(1);
  },
);
