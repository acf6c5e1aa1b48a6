/**
 * Carries out the boot plan and owns the container's run session.
 *
 *   waiting-plan --accept()--> preparing --(image ready + first attach)--> running --> exited
 *                                  \-------------- any step fails ------------------> failed
 *
 * The container starts only when the host has attached: no output is produced before someone
 * reads it, and the terminal size is known. Its output is relayed to the newest attach; while no
 * host is attached the output is not read, so the container blocks instead of losing bytes.
 */

import type { Readable } from 'node:stream';
import {
  type AgentPhase,
  type AgentStatus,
  type AttachSpec,
  type BootPlan,
  type ExecSpec,
  type ExitReport,
  FrameType,
  type HealthState,
  type Notice,
  parseAttachSpec,
} from '@fcvm/protocol';
import type { ContainerRuntime } from './container.js';
import { bindInput, type ExecLaunch } from './exec-server.js';
import type { FrameStream } from './frame-stream.js';
import { describeError, logLine } from './log.js';
import { drainOutput, type ProcessIo } from './process-io.js';

/** Guest-level steps before the image: separate so tests on the host can leave the host alone. */
export interface GuestSetup {
  setHostname(hostname: string): Promise<void>;
  setClock(hostTimeMs: number): Promise<void>;
  configureNetwork(plan: BootPlan): Promise<void>;
  startTimeSync(plan: BootPlan): Promise<void>;
}

export class PlanConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanConflict';
  }
}

/** After a host has received the container's exit, how long the agent waits for its poweroff request. */
export const POWEROFF_GRACE_MS = 10_000;
/**
 * How long a container's exit waits for a host to collect it (a host whose channel broke reconnects
 * and attaches again within its own liveness bound) before the agent powers the VM off anyway.
 */
export const EXIT_UNCOLLECTED_MS = 120_000;
/**
 * How long the run session goes on with no host attached: the wait for the first attach, and a
 * running container's output waiting for a host to come back. Then the agent gives up on hosts:
 * it stops the container (or fails the plan) and powers the VM off.
 */
export const HOST_ABSENT_MS = 120_000;

export class PlanRunner {
  private readonly runtime: ContainerRuntime;
  private readonly setup: GuestSetup;
  private readonly poweroff: () => void;
  private plan: BootPlan | null = null;
  private phase: AgentPhase = 'waiting-plan';
  private failure: string | null = null;
  private exit: ExitReport | null = null;
  private container: ProcessIo | null = null;
  private sink: FrameStream | null = null;
  private sinkWaiters: (() => void)[] = [];
  private firstAttach: ((spec: AttachSpec) => void) | null = null;
  private readonly firstAttachSpec: Promise<AttachSpec>;
  private poweroffTimer: NodeJS.Timeout | null = null;
  private poweroffRequested = false;
  private exitCollected = false;
  /** Set once no host came back within HOST_ABSENT_MS: output is dropped and the container stopped. */
  private hostsGivenUp = false;
  private removal: Promise<void> = Promise.resolve();

  constructor(runtime: ContainerRuntime, setup: GuestSetup, poweroff: () => void) {
    this.runtime = runtime;
    this.setup = setup;
    this.poweroff = poweroff;
    this.firstAttachSpec = new Promise((resolve) => {
      this.firstAttach = resolve;
    });
  }

  get currentPlan(): BootPlan | null {
    return this.plan;
  }

  execLaunch(spec: ExecSpec): ExecLaunch {
    return this.runtime.execLaunch(spec);
  }

  get isRunning(): boolean {
    return this.phase === 'running';
  }

  async status(restoreEpoch: number): Promise<AgentStatus> {
    return {
      phase: this.phase,
      health: await this.health(),
      exitCode: this.exit?.exitCode ?? null,
      failure: this.failure,
      restoreEpoch,
    };
  }

  private async health(): Promise<HealthState> {
    if (this.phase === 'running') return this.runtime.health();
    return this.phase === 'waiting-plan' || this.phase === 'preparing' ? 'starting' : 'stopped';
  }

  accept(plan: BootPlan): void {
    if (this.plan !== null) throw new PlanConflict('this VM already has a plan');
    this.plan = plan;
    this.setPhase('preparing', null);
    const receivedAt = performance.now();
    this.carryOut(plan, receivedAt).catch((err: unknown) => this.fail(describeError(err)));
  }

  private async carryOut(plan: BootPlan, receivedAt: number): Promise<void> {
    await this.setup.setHostname(plan.hostname);
    // The host's time when it sent the plan, moved on by the time the plan waited here.
    await this.setup.setClock(plan.hostTimeMs + Math.round(performance.now() - receivedAt));
    await this.setup.configureNetwork(plan);
    await this.setup.startTimeSync(plan);
    this.setPhase('preparing', 'image');
    const imageReference = await this.runtime.prepareImage(plan);
    this.setPhase('preparing', 'waiting for the host to attach');
    const attach = await this.waitForFirstAttach();
    const container = await this.runtime.start(plan, imageReference, plan.tty ? attach.terminal : null);
    this.container = container;
    this.setPhase('running', null);
    this.notify({ kind: 'started' });
    this.sink?.sendJson(FrameType.Started, {});
    // Input that arrived before the container existed waited in the session's frame queue.
    if (this.sink !== null) bindInput(this.sink, () => this.container);
    if (!plan.interactive && !plan.tty) container.stdin.end();
    const outputs = [this.pump(container.stdout, FrameType.Stdout)];
    if (container.stderr !== null) outputs.push(this.pump(container.stderr, FrameType.Stderr));
    await drainOutput(container, outputs, 'the container');
    logLine('run session: output pumps done');
    this.exit = await container.exited;
    this.container = null;
    this.setPhase('exited', `exit code ${this.exit.exitCode}`);
    this.removal = this.runtime
      .remove()
      .catch((err: unknown) => logLine(`container removal failed: ${describeError(err)}`));
    if (this.sink?.isOpen) {
      logLine('run session: exit sent to the host');
      this.watchDelivery(this.sink.finish(FrameType.Exit, this.exit));
    } else {
      logLine('run session: no host attached; the exit waits for the next attach');
    }
    await this.removal;
    if (!this.exitCollected) this.schedulePoweroff(EXIT_UNCOLLECTED_MS);
  }

  /** The first attach, or a failed plan when no host attaches within HOST_ABSENT_MS. */
  private async waitForFirstAttach(): Promise<AttachSpec> {
    let timer: NodeJS.Timeout | undefined;
    const absent = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no host attached within ${HOST_ABSENT_MS / 1000} s of the image being ready`)),
        HOST_ABSENT_MS,
      );
    });
    try {
      return await Promise.race([this.firstAttachSpec, absent]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** An Exit frame on its way: once the host has it, the VM waits only POWEROFF_GRACE_MS more. */
  private watchDelivery(delivered: Promise<boolean>): void {
    void delivered.then((ok) => {
      if (!ok || this.exitCollected) return;
      this.exitCollected = true;
      logLine('run session: the host has the exit');
      if (!this.poweroffRequested) this.schedulePoweroff();
    });
  }

  private fail(message: string): void {
    logLine(`plan failed: ${message}`);
    this.failure = message;
    this.setPhase('failed', message);
    this.sink?.fail({ code: 'PLAN_FAILED', message });
    this.schedulePoweroff();
  }

  private setPhase(phase: AgentPhase, detail: string | null): void {
    this.phase = phase;
    logLine(`phase ${phase}${detail === null ? '' : ` (${detail})`}`);
    this.notify({ kind: 'phase', phase, detail });
  }

  private notify(notice: Notice): void {
    this.sink?.sendJson(FrameType.Notice, notice);
  }

  /** A host attaches to the container's run session; the newest attach wins. */
  async attach(frames: FrameStream): Promise<void> {
    let spec: AttachSpec;
    try {
      spec = parseAttachSpec(await frames.firstStart());
    } catch (err) {
      frames.fail({ code: 'BAD_MESSAGE', message: describeError(err) });
      return;
    }
    if (this.plan === null) {
      frames.fail({ code: 'CONFLICT', message: 'there is no plan to attach to yet' });
      return;
    }
    this.sink?.fail({ code: 'SUPERSEDED', message: 'a newer host session attached to the container' });
    this.sink = frames;
    frames.gone.signal.addEventListener('abort', () => {
      if (this.sink === frames) this.sink = null;
    });
    frames.sendJson(FrameType.Notice, { kind: 'phase', phase: this.phase, detail: null } satisfies Notice);
    if (this.container !== null) bindInput(frames, () => this.container);
    if (this.phase === 'failed') {
      frames.fail({ code: 'PLAN_FAILED', message: this.failure ?? 'the plan failed' });
      return;
    }
    if (this.exit !== null && this.container === null) {
      logLine('run session: exit sent to a new attach');
      this.watchDelivery(frames.finish(FrameType.Exit, this.exit));
      return;
    }
    if (this.container !== null) {
      frames.sendJson(FrameType.Started, {});
      if (this.plan.tty && spec.terminal !== null) await this.container.resize(spec.terminal);
    }
    this.firstAttach?.(spec);
    this.firstAttach = null;
    for (const wake of this.sinkWaiters.splice(0)) wake();
  }

  /** Relays one output stream to whichever host is attached, waiting (bounded) while none is. */
  private async pump(source: Readable, type: typeof FrameType.Stdout | typeof FrameType.Stderr): Promise<void> {
    try {
      for await (const chunk of source) {
        const sink = await this.waitForSink();
        if (sink !== null && !sink.sendData(type, chunk as Buffer)) await sink.drained();
      }
    } catch (err) {
      logLine(`container output ended early: ${describeError(err)}`);
    }
  }

  /** The attached host; null once no host came back within HOST_ABSENT_MS (the container is then stopped). */
  private async waitForSink(): Promise<FrameStream | null> {
    for (;;) {
      if (this.hostsGivenUp) return null;
      const sink = this.sink;
      if (sink?.isOpen) return sink;
      let timer: NodeJS.Timeout | undefined;
      const arrived = await new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), HOST_ABSENT_MS);
        this.sinkWaiters.push(() => resolve(true));
      });
      clearTimeout(timer);
      if (!arrived && (this.sink === null || !this.sink.isOpen)) this.giveUpOnHosts();
    }
  }

  private giveUpOnHosts(): void {
    if (this.hostsGivenUp) return;
    this.hostsGivenUp = true;
    logLine(`no host attached for ${HOST_ABSENT_MS / 1000} s while the container runs: stopping it`);
    this.container?.kill('SIGKILL');
  }

  /** The host has what it needs: power off now (the container is removed already or never ran). */
  requestPoweroff(): void {
    this.poweroffRequested = true;
    if (this.container !== null) {
      logLine('poweroff requested while the container runs: stopping it');
      this.container.kill('SIGKILL');
    }
    this.schedulePoweroff(0);
  }

  private schedulePoweroff(delayMs = POWEROFF_GRACE_MS): void {
    if (this.poweroffTimer !== null) clearTimeout(this.poweroffTimer);
    this.poweroffTimer = setTimeout(() => {
      void this.removal.then(() => this.poweroff());
    }, delayMs);
  }

  /** Stops timers (tests, agent shutdown). */
  dispose(): void {
    if (this.poweroffTimer !== null) clearTimeout(this.poweroffTimer);
  }
}
