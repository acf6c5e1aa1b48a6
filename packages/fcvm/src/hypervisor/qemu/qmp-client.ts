/**
 * A client for QEMU's machine protocol (QMP) on a Unix socket. The wire format is one JSON object per
 * line: a greeting `{"QMP": ...}` on connect, then `qmp_capabilities` to leave negotiation mode, then
 * commands `{"execute", "arguments", "id"}` answered by `{"return"|"error", "id"}`, interleaved with
 * asynchronous events `{"event", "data", "timestamp"}`.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { errnoCode, FcvmError } from '../../errors.js';

const responseSchema = z.union([
  z.object({ QMP: z.unknown() }),
  z.object({ return: z.unknown(), id: z.string().optional() }),
  z.object({ error: z.object({ class: z.string(), desc: z.string() }), id: z.string().optional() }),
  z.object({ event: z.string(), data: z.unknown().optional() }),
]);

interface Pending {
  readonly command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export interface QmpConnectOptions {
  /** Give up after this long (QEMU creates the socket early, but a loaded host is slow). */
  readonly timeoutMs: number;
  /** Settles when QEMU has exited: there is then no point in waiting for its socket. */
  readonly processExited: Promise<unknown>;
  readonly signal?: AbortSignal;
}

export class QmpClient {
  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private buffer = '';
  private readonly eventListeners: ((event: string, data: unknown) => void)[] = [];
  private closedError: Error | undefined;
  private greeting: { resolve(): void; reject(err: Error): void } | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly socketPath: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.onClosed(err));
    socket.on('close', () => this.onClosed(new Error('QMP connection closed')));
  }

  /** Connects (retrying while QEMU is still creating the socket) and negotiates capabilities. */
  static async connect(socketPath: string, options: QmpConnectOptions): Promise<QmpClient> {
    const deadline = Date.now() + options.timeoutMs;
    let exited = false;
    void options.processExited.then(() => {
      exited = true;
    });
    for (;;) {
      options.signal?.throwIfAborted();
      let client: QmpClient | undefined;
      try {
        client = new QmpClient(await connectOnce(socketPath), socketPath);
        await client.handshake(Math.max(deadline - Date.now(), 1000));
        return client;
      } catch (err) {
        client?.close();
        const code = errnoCode(err);
        const retriable = code === 'ENOENT' || code === 'ECONNREFUSED';
        if (!retriable || exited || Date.now() >= deadline) {
          const why = exited ? 'QEMU exited before its control socket answered' : 'QEMU control socket did not answer';
          throw new FcvmError('HYPERVISOR', `${why} (${socketPath}).`, { cause: err, context: { socketPath } });
        }
        await sleep(20, undefined, { signal: options.signal });
      }
    }
  }

  private async handshake(timeoutMs: number): Promise<void> {
    const greeting = new Promise<void>((resolve, reject) => {
      this.greeting = { resolve, reject };
    });
    const timer = setTimeout(() => this.greeting?.reject(new Error('no QMP greeting')), timeoutMs);
    try {
      await greeting;
    } finally {
      clearTimeout(timer);
    }
    await this.execute('qmp_capabilities');
  }

  /** Calls `listener` with every asynchronous QMP event (name and data). */
  onEvent(listener: (event: string, data: unknown) => void): void {
    this.eventListeners.push(listener);
  }

  get isOpen(): boolean {
    return this.closedError === undefined;
  }

  /** Runs one command; resolves with its `return` value, rejects with QEMU's error description. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError !== undefined) {
      return Promise.reject(
        new FcvmError('HYPERVISOR', `QEMU did not run ${command}: its control connection is closed.`, {
          cause: this.closedError,
        }),
      );
    }
    const id = String(this.nextId++);
    const message = JSON.stringify({ execute: command, ...(args === undefined ? {} : { arguments: args }), id });
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      this.socket.write(`${message}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let newline = this.buffer.indexOf('\n'); newline >= 0; newline = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line !== '') this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let parsed: z.infer<typeof responseSchema>;
    try {
      parsed = responseSchema.parse(JSON.parse(line));
    } catch (err) {
      this.onClosed(
        new FcvmError('HYPERVISOR', `QEMU sent an unreadable QMP message: ${line.slice(0, 200)}`, { cause: err }),
      );
      this.socket.destroy();
      return;
    }
    if ('QMP' in parsed) {
      this.greeting?.resolve();
      return;
    }
    // Asynchronous events (STOP, RESUME, BLOCK_IO_ERROR, ...): the handle learns about exits from the process itself.
    if ('event' in parsed) {
      for (const listener of this.eventListeners) listener(parsed.event, parsed.data);
      return;
    }
    const pending = parsed.id === undefined ? undefined : this.pending.get(parsed.id);
    if (pending === undefined || parsed.id === undefined) return;
    this.pending.delete(parsed.id);
    if ('error' in parsed) {
      pending.reject(
        new FcvmError('HYPERVISOR', `QEMU refused ${pending.command}: ${parsed.error.desc}`, {
          context: { qmpClass: parsed.error.class, socketPath: this.socketPath },
        }),
      );
    } else {
      pending.resolve(parsed.return);
    }
  }

  private onClosed(err: Error): void {
    this.closedError ??= err;
    this.greeting?.reject(err);
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(
        new FcvmError('HYPERVISOR', `QEMU did not answer ${pending.command}: its control connection closed.`, {
          cause: err,
        }),
      );
    }
  }
}

function connectOnce(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
