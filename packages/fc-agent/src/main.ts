/**
 * fc-agent, the guest agent. Bundled to one file and run by the guest's Node from the guest init
 * (`node /run/fcvm/fc-agent.mjs`). In the guest the agent powers the VM off itself when it is done
 * (the init would too, after the agent exits); on a development host (--listen-unix) it just exits.
 *
 *   fc-agent [--port-name fcvm.agent] [--token-file /run/fcvm/token]
 *   fc-agent --listen-unix PATH --token-file FILE     (development: serve a Unix socket on this host)
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
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
const SYSFS_PORTS = '/sys/class/virtio-ports';
const PORT_WAIT_MS = 10_000;
const SHUTDOWN_DRAIN_MS = 300;
/** The guest init powers off with the same binary. */
const BUSYBOX = '/usr/local/bin/busybox';

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

/**
 * The device of the virtio-serial port named `name`. /dev/virtio-ports/NAME is a udev symlink, and
 * the guest runs no udev: the name is in sysfs (/sys/class/virtio-ports/vportNpM/name).
 */
async function findPortByName(name: string): Promise<string | null> {
  const udevPath = `/dev/virtio-ports/${name}`;
  if (existsSync(udevPath)) return udevPath;
  const entries = await readdir(SYSFS_PORTS).catch(() => []);
  for (const entry of entries) {
    const portName = await readFile(`${SYSFS_PORTS}/${entry}/name`, 'utf8').catch(() => '');
    if (portName.trim() === name) return `/dev/${entry}`;
  }
  return null;
}

async function waitForPort(name: string): Promise<string> {
  const found = await findPortByName(name);
  if (found !== null) return found;
  await runCommand(['modprobe', 'virtio_console']).catch((err: unknown) => {
    logLine(`modprobe virtio_console: ${describeError(err)}`);
  });
  const deadline = Date.now() + PORT_WAIT_MS;
  for (;;) {
    const path = await findPortByName(name);
    if (path !== null && existsSync(path)) return path;
    if (Date.now() > deadline) throw new Error(`the virtio-serial port ${name} did not appear in the guest`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'port-name': { type: 'string', default: AGENT_PORT_NAME },
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
      runRestoreSequence({
        hostTimeMs: hello.hostTimeMs,
        network: plan.currentPlan?.network ?? null,
        identity: hello.restore ?? null,
      }),
  });
  const serve = (stream: import('node:stream').Duplex): Promise<void> => server.serveSession(stream);

  const unixPath = values['listen-unix'];
  if (unixPath !== undefined) {
    const close = await serveUnixSocket(unixPath, serve);
    logLine(`listening on ${unixPath}`);
    await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
    await close();
  } else {
    const portPath = await waitForPort(values['port-name']);
    logLine(`serving the host on ${portPath}`);
    // The port loop ends when stop aborts after its current read; don't wait for a host that never comes.
    void serveVirtioPort(portPath, serve, stop.signal).catch((err: unknown) => {
      logLine(`channel failed: ${describeError(err)}`);
      stop.abort();
    });
    await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
    // Let the last answers (the poweroff's 202) drain through the port before the VM goes.
    await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_DRAIN_MS));
    server.closeSessions();
    plan.dispose();
    await powerOffGuest();
  }
  server.closeSessions();
  plan.dispose();
}

/**
 * Powers the guest off from here rather than by exiting to the init: Node's exit joins its worker
 * threads, and one of them sits in a read() of the port that only returns when the host sends or
 * leaves, so exiting can hang (seen in a guest).
 */
async function powerOffGuest(): Promise<void> {
  logLine('powering the VM off');
  await runCommand(['sync']).catch((err: unknown) => logLine(`sync: ${describeError(err)}`));
  await runCommand([BUSYBOX, 'poweroff', '-f']);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    logLine(`fatal: ${describeError(err)}`);
    process.exit(1);
  },
);
