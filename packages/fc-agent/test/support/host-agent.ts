/**
 * The real agent server, run as its own process on the development host for tests of the channel
 * (packages/fcvm/test/unit/agent). Everything is the agent's own code except two seams that would
 * touch the host: guest setup (hostname, clock, network) is only logged, and the "container" is the
 * plan's command run directly on the host instead of through podman (there is no podman here;
 * podman's argv is covered by container.test.ts and the VM tests).
 *
 *   node --import tsx host-agent.ts --listen-unix PATH --token-file FILE
 * Prints `ready` on stdout once listening; exits when the plan's poweroff fires.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { BootPlan, ExecSpec, HealthState, TerminalSize } from '@fcvm/protocol';
import { serveUnixSocket } from '../../src/channel.js';
import type { ContainerRuntime } from '../../src/container.js';
import { type ExecLaunch, launchInVm } from '../../src/exec-server.js';
import { logLine } from '../../src/log.js';
import type { GuestSetup } from '../../src/plan.js';
import { PlanRunner } from '../../src/plan.js';
import { type ProcessIo, spawnWithPipes } from '../../src/process-io.js';
import { spawnWithTerminal } from '../../src/pty.js';
import { AgentServer } from '../../src/server.js';

class HostProcessRuntime implements ContainerRuntime {
  async prepareImage(plan: BootPlan): Promise<string> {
    return plan.imageReference ?? 'host';
  }

  start(plan: BootPlan, _image: string, terminal: TerminalSize | null): Promise<ProcessIo> {
    const argv = plan.command ?? ['true'];
    const options = { env: { ...process.env, ...plan.env }, cwd: plan.workdir };
    return terminal === null ? spawnWithPipes(argv, options) : spawnWithTerminal(argv, terminal, options);
  }

  execLaunch(spec: ExecSpec): ExecLaunch {
    return launchInVm(spec);
  }

  async health(): Promise<HealthState> {
    return 'healthy';
  }

  async remove(): Promise<void> {}
}

const loggedSetup: GuestSetup = {
  setHostname: async (hostname) => logLine(`setup: hostname ${hostname}`),
  setClock: async (ms) => logLine(`setup: clock ${ms}`),
  configureNetwork: async (plan) => logLine(`setup: network ${plan.network.kind}`),
  startTimeSync: async (plan) => logLine(`setup: time sync with ${plan.ntpSources.length} sources`),
};

const { values } = parseArgs({
  options: { 'listen-unix': { type: 'string' }, 'token-file': { type: 'string' } },
});
const socketPath = values['listen-unix'];
const tokenFile = values['token-file'];
if (socketPath === undefined || tokenFile === undefined) throw new Error('--listen-unix and --token-file are required');
const token = (await readFile(tokenFile, 'utf8')).trim();
const stop = new AbortController();
const plan = new PlanRunner(new HostProcessRuntime(), loggedSetup, () => stop.abort());
const server = new AgentServer({
  token,
  agentVersion: 'test',
  plan,
  onRestore: async (hello) => logLine(`restore: epoch ${hello.restoreEpoch}`),
});
const close = await serveUnixSocket(socketPath, (stream) => server.serveSession(stream));
process.stdout.write('ready\n');
await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
server.closeSessions();
await close();
plan.dispose();
logLine('powered off');
