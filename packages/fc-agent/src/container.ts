/**
 * The container layer: everything the agent asks of podman, behind ContainerRuntime so the rest
 * of the agent (plan, attach, exec) does not know how containers are made. PodmanRuntime is the
 * real one; its argv builders are pure functions so their flags can be checked without podman.
 *
 * Podman runs without systemd here: cgroupfs manager, file events, k8s-file logs.
 */
import {
  type BootPlan,
  CONTAINER_NAME,
  type ExecSpec,
  type HealthState,
  type ImageSource,
  type TerminalSize,
} from '@fcvm/protocol';
import { runCommand } from './command.js';
import type { ExecLaunch } from './exec-server.js';
import { describeError, logLine } from './log.js';
import { type ProcessIo, spawnWithPipes } from './process-io.js';
import { spawnWithTerminal } from './pty.js';

export interface ContainerRuntime {
  /** Makes the plan's image available; returns the reference to run. */
  prepareImage(plan: BootPlan): Promise<string>;
  /** Starts the container in the foreground; its streams are the container's. */
  start(plan: BootPlan, imageReference: string, terminal: TerminalSize | null): Promise<ProcessIo>;
  /** How to run an exec session inside the running container. */
  execLaunch(spec: ExecSpec): ExecLaunch;
  health(): Promise<HealthState>;
  /** Removes the container; done when it is already gone. */
  remove(): Promise<void>;
}

const PODMAN = 'podman';
/** Global flags for a guest without systemd or journald. */
export const PODMAN_GLOBAL_FLAGS: readonly string[] = ['--cgroup-manager=cgroupfs', '--events-backend=file'];

export function loadArgv(image: Extract<ImageSource, { kind: 'archive' }>): string[] {
  // podman load reads docker-archive and oci-archive alike; the format is in the file.
  return [PODMAN, ...PODMAN_GLOBAL_FLAGS, 'load', '--input', image.path];
}

export function pullArgv(reference: string): string[] {
  return [PODMAN, ...PODMAN_GLOBAL_FLAGS, 'pull', reference];
}

export function runArgv(plan: BootPlan, imageReference: string): string[] {
  const argv = [PODMAN, ...PODMAN_GLOBAL_FLAGS, 'run', '--name', CONTAINER_NAME, '--network=host'];
  argv.push('--log-driver=k8s-file', '--ulimit', 'nofile=65536:65536');
  // A terminal carries keys as well as output: -t attaches stdin (the host forwards it) so that
  // Ctrl-C reaches the container's terminal. That Ctrl-C becomes SIGINT for the container's
  // foreground process, which is often PID 1 of its namespace (busybox sh execs its last command),
  // and PID 1 gets no default signal action: --init puts podman's init (catatonit) there instead.
  if (plan.interactive || plan.tty) argv.push('--interactive');
  if (plan.tty) argv.push('--tty', '--init');
  for (const [name, value] of Object.entries(plan.env)) argv.push('--env', `${name}=${value}`);
  if (plan.user !== null) argv.push('--user', plan.user);
  if (plan.workdir !== null) argv.push('--workdir', plan.workdir);
  argv.push(imageReference);
  if (plan.command !== null) argv.push(...plan.command);
  return argv;
}

export function execArgv(spec: ExecSpec): string[] {
  const argv = [PODMAN, ...PODMAN_GLOBAL_FLAGS, 'exec'];
  if (spec.interactive || spec.terminal !== null) argv.push('--interactive');
  if (spec.terminal !== null) argv.push('--tty');
  for (const [name, value] of Object.entries(spec.env)) argv.push('--env', `${name}=${value}`);
  if (spec.workdir !== null) argv.push('--workdir', spec.workdir);
  argv.push(CONTAINER_NAME, ...spec.command);
  return argv;
}

/** The reference `podman load` reports ("Loaded image: localhost/x:latest" or "Loaded image(s): ..."). */
export function parseLoadedImage(output: string): string | null {
  const match = /^Loaded image(?:\(s\))?:\s*(\S+)/m.exec(output);
  return match?.[1]?.split(',')[0] ?? null;
}

const PULL_ATTEMPTS = 3;
const PULL_RETRY_MS = 2000;
/** podman healthcheck run: 0 healthy, 1 unhealthy, 125 with this message when there is no check. */
const NO_HEALTHCHECK = /has no defined healthcheck/i;
const HEALTH_CACHE_MS = 5000;

/**
 * Whether `podman image inspect` output declares a HEALTHCHECK; null when it cannot tell. Podman puts
 * it at the top level (`Healthcheck`), Docker-style data under `Config`; `NONE` disables an inherited one.
 */
export function declaresHealthcheck(inspectJson: string): boolean | null {
  let images: unknown;
  try {
    images = JSON.parse(inspectJson);
  } catch {
    return null;
  }
  const image = (Array.isArray(images) ? images[0] : null) as Record<string, unknown> | null;
  if (image === null || typeof image !== 'object') return null;
  const config = image.Config as Record<string, unknown> | undefined;
  const check = (image.Healthcheck ?? image.HealthCheck ?? config?.Healthcheck ?? null) as { Test?: unknown } | null;
  const test = check?.Test;
  return Array.isArray(test) && test.length > 0 && test[0] !== 'NONE';
}

export class PodmanRuntime implements ContainerRuntime {
  private lastHealth: { at: number; state: HealthState } | null = null;
  /** From the image, before the container starts; null: unknown, so ask podman each time. */
  private hasHealthcheck: boolean | null = null;

  async prepareImage(plan: BootPlan): Promise<string> {
    const reference = await this.obtainImage(plan);
    // Known before `podman run` starts, so no health request ever runs podman beside the container's
    // start for an image without a HEALTHCHECK (the usual case): two podmans contend for its lock.
    const inspect = await runCommand([PODMAN, ...PODMAN_GLOBAL_FLAGS, 'image', 'inspect', reference], {
      allowFailure: true,
      timeoutMs: 60_000,
      killSignal: 'SIGTERM',
    }).catch(() => null);
    this.hasHealthcheck = inspect === null || inspect.exitCode !== 0 ? null : declaresHealthcheck(inspect.stdout);
    logLine(`image ${reference}: healthcheck ${this.hasHealthcheck === null ? 'unknown' : this.hasHealthcheck}`);
    return reference;
  }

  private async obtainImage(plan: BootPlan): Promise<string> {
    if (plan.image.kind === 'archive') {
      const result = await runCommand(loadArgv(plan.image), { timeoutMs: 600_000 });
      const loaded = parseLoadedImage(result.stdout);
      const reference = plan.imageReference ?? loaded;
      if (reference === null) throw new Error(`podman load did not name the image it loaded: ${result.stdout.trim()}`);
      return reference;
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await runCommand(pullArgv(plan.image.reference), { timeoutMs: 600_000 });
        return plan.image.reference;
      } catch (err) {
        if (attempt >= PULL_ATTEMPTS) throw err;
        logLine(`pull attempt ${attempt} failed, retrying: ${describeError(err)}`);
        await new Promise((resolve) => setTimeout(resolve, PULL_RETRY_MS));
      }
    }
  }

  start(plan: BootPlan, imageReference: string, terminal: TerminalSize | null): Promise<ProcessIo> {
    const argv = runArgv(plan, imageReference);
    const options = { env: process.env, cwd: null };
    // With -t podman needs a terminal of its own: it relays it to the container's and follows its size.
    return terminal === null ? spawnWithPipes(argv, options) : spawnWithTerminal(argv, terminal, options);
  }

  execLaunch(spec: ExecSpec): ExecLaunch {
    return { argv: execArgv(spec), env: process.env, cwd: null };
  }

  async health(): Promise<HealthState> {
    const now = Date.now();
    if (this.hasHealthcheck === false) return 'healthy';
    if (this.lastHealth !== null && now - this.lastHealth.at < HEALTH_CACHE_MS) return this.lastHealth.state;
    // Without systemd nothing runs the image's HEALTHCHECK on a timer: run it on demand.
    const result = await runCommand([PODMAN, ...PODMAN_GLOBAL_FLAGS, 'healthcheck', 'run', CONTAINER_NAME], {
      allowFailure: true,
      timeoutMs: 30_000,
      killSignal: 'SIGTERM',
    });
    const noCheck = NO_HEALTHCHECK.test(result.stderr) || NO_HEALTHCHECK.test(result.stdout);
    const state: HealthState = result.exitCode === 0 || noCheck ? 'healthy' : 'unhealthy';
    this.lastHealth = { at: now, state };
    return state;
  }

  async remove(): Promise<void> {
    await runCommand([PODMAN, ...PODMAN_GLOBAL_FLAGS, 'rm', '--force', '--ignore', CONTAINER_NAME], {
      timeoutMs: 60_000,
      killSignal: 'SIGTERM',
    });
  }
}
