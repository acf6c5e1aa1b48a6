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
import type { ProcessIo } from './process-io.js';

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

/** How long the agent waits for the host's poweroff request after the container exited. */
export const POWEROFF_GRACE_MS = 10_000;

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
    const attach = await this.firstAttachSpec;
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
    await Promise.all(outputs);
    this.exit = await container.exited;
    this.container = null;
    this.setPhase('exited', `exit code ${this.exit.exitCode}`);
    this.sink?.finish(FrameType.Exit, this.exit);
    this.removal = this.runtime
      .remove()
      .catch((err: unknown) => logLine(`container removal failed: ${describeError(err)}`));
    await this.removal;
    this.schedulePoweroff();
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
      frames.finish(FrameType.Exit, this.exit);
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

  /** Relays one output stream to whichever host is attached, waiting while none is. */
  private async pump(source: Readable, type: typeof FrameType.Stdout | typeof FrameType.Stderr): Promise<void> {
    for await (const chunk of source) {
      for (;;) {
        const sink = this.sink;
        if (sink === null || !sink.isOpen) {
          await new Promise<void>((resolve) => this.sinkWaiters.push(resolve));
          continue;
        }
        if (!sink.sendData(type, chunk as Buffer)) await sink.drained();
        break;
      }
    }
  }

  /** The host has what it needs: power off now (the container is removed already or never ran). */
  requestPoweroff(): void {
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
