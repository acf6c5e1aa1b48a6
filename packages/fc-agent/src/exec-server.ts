/**
 * Exec sessions: a command in the container (through the ContainerRuntime, `podman exec`) or in the
 * guest itself (`fcvm exec --vm`), on pipes or under a PTY. The process is bound to its session:
 * when the host's stream breaks, the process is killed.
 */
import { decodeJsonPayload, type ExecSpec, FrameType, parseExecSpec, parseTerminalSize } from '@fcvm/protocol';
import type { FrameStream } from './frame-stream.js';
import { describeError, logLine } from './log.js';
import { drainOutput, type ProcessIo, SpawnError, spawnWithPipes } from './process-io.js';
import { spawnWithTerminal } from './pty.js';

/** How to run a command: the argv plus its environment and directory. */
export interface ExecLaunch {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string | null;
}

/** Decides the launch for a spec, or throws a WireError-shaped rejection (see ExecRejected). */
export type ExecResolver = (spec: ExecSpec) => ExecLaunch;

export class ExecRejected extends Error {
  readonly code: 'CONFLICT' | 'BAD_MESSAGE';

  constructor(code: 'CONFLICT' | 'BAD_MESSAGE', message: string) {
    super(message);
    this.name = 'ExecRejected';
    this.code = code;
  }
}

/** Exec in the guest: the command itself, with the spec's env on top of the agent's. */
export function launchInVm(spec: ExecSpec): ExecLaunch {
  return { argv: spec.command, env: { ...process.env, ...spec.env }, cwd: spec.workdir };
}

/** Wires stdin/resize frames from the host into a running process. */
export function bindInput(frames: FrameStream, io: () => ProcessIo | null): void {
  frames.onFrame((frame) => {
    const target = io();
    if (target === null) return;
    switch (frame.type) {
      case FrameType.Stdin:
        if (!target.stdin.write(frame.payload)) {
          frames.pauseInput();
          target.stdin.once('drain', () => frames.resumeInput());
        }
        break;
      case FrameType.StdinEnd:
        target.stdin.end();
        break;
      case FrameType.Resize:
        try {
          target.resize(parseTerminalSize(decodeJsonPayload(frame))).catch((err: unknown) => {
            logLine(`resize failed: ${describeError(err)}`);
          });
        } catch (err) {
          frames.fail({ code: 'BAD_MESSAGE', message: describeError(err) });
        }
        break;
      default:
        frames.fail({ code: 'BAD_MESSAGE', message: `frame 0x${frame.type.toString(16)} is not expected now` });
    }
  });
}

export async function serveExec(frames: FrameStream, resolve: ExecResolver): Promise<void> {
  let spec: ExecSpec;
  let launch: ExecLaunch;
  try {
    spec = parseExecSpec(await frames.firstStart());
    launch = resolve(spec);
  } catch (err) {
    frames.fail({ code: err instanceof ExecRejected ? err.code : 'BAD_MESSAGE', message: describeError(err) });
    return;
  }
  let io: ProcessIo;
  try {
    const options = { env: launch.env, cwd: launch.cwd };
    io =
      spec.terminal === null
        ? await spawnWithPipes(launch.argv, options)
        : await spawnWithTerminal(launch.argv, spec.terminal, options);
  } catch (err) {
    frames.fail({ code: err instanceof SpawnError ? 'SPAWN_FAILED' : 'INTERNAL', message: describeError(err) });
    return;
  }
  const running = io;
  const killOnHangup = (): void => running.kill('SIGKILL');
  frames.gone.signal.addEventListener('abort', killOnHangup);
  frames.sendJson(FrameType.Started, {});
  bindInput(frames, () => running);
  // Without -i there is no stdin to wait for; a terminal keeps it open so Ctrl-C can reach it.
  if (!spec.interactive && spec.terminal === null) io.stdin.end();
  const outputs = [frames.forward(io.stdout, FrameType.Stdout)];
  if (io.stderr !== null) outputs.push(frames.forward(io.stderr, FrameType.Stderr));
  await drainOutput(io, outputs, `exec ${spec.command[0] ?? ''}`);
  const exit = await io.exited;
  frames.gone.signal.removeEventListener('abort', killOnHangup);
  void frames.finish(FrameType.Exit, exit);
}
