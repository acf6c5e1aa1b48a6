/**
 * `fcvm exec`: runs one command in a running VM through the control socket of the fcvm process
 * that owns it (vm/control-server.ts), and returns the command's exit status.
 */
import { existsSync } from 'node:fs';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { AGENT_AUTHORITY, type ExecSpec, FRAMES_CONTENT_TYPE, Route } from '@fcvm/protocol';
import { runFrameSession } from '../agent/frame-session.js';
import { ttyTerminal } from '../agent/session-io.js';
import type { ExecRequest } from '../cli/commands/exec.js';
import type { DataDir } from '../data-dir.js';
import { FcvmError, usageError } from '../errors.js';
import { log } from '../log.js';
import type { VmRecord } from '../state/record.js';
import type { Registry } from '../state/registry.js';
import { CONTROL_SOCKET_NAME } from './control-server.js';
import { sweepLeftovers } from './leftovers.js';

export interface ExecEnvironment {
  readonly dataDir: DataDir;
  readonly registry: Registry;
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
}

async function findTarget(request: ExecRequest, env: ExecEnvironment): Promise<VmRecord> {
  await sweepLeftovers(env.registry, env.dataDir);
  const target = request.target;
  if ('pid' in target) {
    const record = env.registry.findByPid(target.pid);
    if (!record) throw new FcvmError('NOT_FOUND', `No running VM belongs to fcvm pid ${target.pid}; see fcvm ls.`);
    return record;
  }
  const matches = env.registry.findByName(target.name).filter((r) => r.config.process_type !== 'serve');
  if (matches.length === 0) throw new FcvmError('NOT_FOUND', `No running VM is named ${target.name}; see fcvm ls.`);
  if (matches.length > 1) {
    throw usageError(`${matches.length} running VMs are named ${target.name}; pick one with --pid (see fcvm ls).`);
  }
  return matches[0] as VmRecord;
}

export async function execInVm(request: ExecRequest, env: ExecEnvironment): Promise<number> {
  if (request.tty && !env.stdin.isTTY) throw usageError('-t needs a terminal on stdin; leave out -t.');
  const record = await findTarget(request, env);
  const socketPath = join(env.dataDir.vmDir(record.vm_id), CONTROL_SOCKET_NAME);
  if (record.status !== 'running' || !existsSync(socketPath)) {
    throw new FcvmError(
      'NOT_FOUND',
      `VM ${record.name ?? record.vm_id} is not running yet (status ${record.status}); try again.`,
    );
  }
  const session = http2.connect(AGENT_AUTHORITY, { createConnection: () => connect(socketPath) });
  session.on('error', (err) => log.debug(`control socket: ${err.message}`));
  const terminal = request.tty ? ttyTerminal(env.stdout) : null;
  const spec: ExecSpec = {
    command: request.command,
    inVm: request.inVm,
    interactive: request.interactive || request.tty,
    terminal: terminal?.size() ?? null,
    env: {},
    workdir: null,
  };
  const stream = session.request({ ':method': 'POST', ':path': Route.Exec, 'content-type': FRAMES_CONTENT_TYPE });
  const raw = terminal !== null && env.stdin.isTTY;
  if (raw) env.stdin.setRawMode(true);
  try {
    const exit = await runFrameSession(stream, spec, {
      stdout: env.stdout,
      stderr: env.stderr,
      stdin: spec.interactive ? env.stdin : null,
      terminal,
    });
    return exit.exitCode;
  } finally {
    if (raw) env.stdin.setRawMode(false);
    session.close();
  }
}
