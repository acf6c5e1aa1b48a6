/**
 * Test fixture: the real agent server in its own process on this host (fc-agent/test/support/
 * host-agent.ts), listening on a Unix socket in a temp dir, and helpers to talk to it with the real
 * AgentClient. Everything is removed in `dispose`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { BootPlan, TerminalSize } from '@fcvm/protocol';
import { AgentClient, type ConnectOptions } from '../../../src/agent/agent-client.js';
import type { LocalTerminal, SessionIo } from '../../../src/agent/session-io.js';

const HOST_AGENT = fileURLToPath(new URL('../../../../fc-agent/test/support/host-agent.ts', import.meta.url));

export class AgentFixture {
  readonly token = randomBytes(16).toString('hex');
  readonly socketPath: string;
  private readonly dir: string;
  private process: ChildProcess | null = null;
  private readonly clients: AgentClient[] = [];
  private readonly sockets: net.Socket[] = [];
  /** Everything the agent wrote to stderr (its log). */
  log = '';
  readonly exited: Promise<number | null>;
  private markExited: (code: number | null) => void = () => {};

  private constructor(dir: string) {
    this.dir = dir;
    this.socketPath = join(dir, 'agent.sock');
    this.exited = new Promise((resolve) => {
      this.markExited = resolve;
    });
  }

  static async start(): Promise<AgentFixture> {
    const fixture = new AgentFixture(await mkdtemp(join(tmpdir(), 'fcvm-agent-test-')));
    const tokenFile = join(fixture.dir, 'token');
    await writeFile(tokenFile, `${fixture.token}\n`);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', HOST_AGENT, '--listen-unix', fixture.socketPath, '--token-file', tokenFile],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    fixture.process = child;
    child.on('exit', (code) => fixture.markExited(code));
    child.stderr.on('data', (chunk: Buffer) => {
      fixture.log += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`host agent exited with ${code}: ${fixture.log}`)));
    });
    return fixture;
  }

  /** A raw connection to the agent (owned by the fixture). */
  async openStream(): Promise<net.Socket> {
    const socket = net.connect(this.socketPath);
    this.sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return socket;
  }

  async connect(options: Partial<ConnectOptions> = {}): Promise<AgentClient> {
    const client = await AgentClient.connect(await this.openStream(), { token: this.token, ...options });
    this.clients.push(client);
    return client;
  }

  /** Sends a signal to the agent process (SIGSTOP makes it a silent peer). */
  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal);
  }

  async dispose(): Promise<void> {
    this.process?.kill('SIGCONT');
    for (const client of this.clients) client.destroy();
    for (const socket of this.sockets) socket.destroy();
    if (this.process !== null && this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGKILL');
      await this.exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Collects a session's output as strings. */
export interface CapturedIo extends SessionIo {
  stdoutText(): string;
  stderrText(): string;
  /** Resolves once stdout contains `text`. */
  waitForStdout(text: string): Promise<void>;
}

export function captureIo(options: { stdin?: Readable | null; terminal?: LocalTerminal | null } = {}): CapturedIo {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    for (const waiter of waiters.filter((w) => out.includes(w.text))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  return {
    stdout,
    stderr,
    stdin: options.stdin ?? null,
    terminal: options.terminal ?? null,
    stdoutText: () => out,
    stderrText: () => err,
    waitForStdout: (text) =>
      out.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ text, resolve })),
  };
}

/** A terminal whose size the test changes. */
export class TestTerminal implements LocalTerminal {
  private current: TerminalSize;
  private readonly listeners = new Set<(size: TerminalSize) => void>();

  constructor(size: TerminalSize) {
    this.current = size;
  }

  size(): TerminalSize {
    return this.current;
  }

  onResize(listener: (size: TerminalSize) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  resize(size: TerminalSize): void {
    this.current = size;
    for (const listener of this.listeners) listener(size);
  }
}

export function stdinOf(text: string): Readable {
  return Readable.from([Buffer.from(text)]);
}

/** A plan for the host agent, whose container runtime runs `command` on this host. */
export function planFor(command: string[], options: Partial<BootPlan> = {}): BootPlan {
  return {
    hostname: 'test-vm',
    image: { kind: 'archive', format: 'docker-archive', path: '/run/fcvm/image.tar' },
    imageReference: 'localhost/fcvm-busybox',
    command,
    env: {},
    user: null,
    workdir: null,
    tty: false,
    interactive: false,
    network: { kind: 'none' },
    hostTimeMs: Date.now(),
    ntpSources: [],
    ...options,
  };
}
