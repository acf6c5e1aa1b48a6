/**
 * `fcvm exec`: runs one command in a running VM through the agent relay of the fcvm process that
 * owns it (agent/agent-relay.ts, a Unix socket in the VM dir), and returns the command's exit status.
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { AgentClient, ttyTerminal } from '../agent/index.js';
import type { DataDir } from '../data-dir.js';
import { FcvmError, usageError } from '../errors.js';
import type { VmRecord } from '../state/record.js';
import type { Registry } from '../state/registry.js';
import { RELAY_SOCKET_NAME, RELAY_TOKEN_NAME } from './launch.js';
import { sweepLeftovers } from './leftovers.js';

/** What `fcvm exec` asks the library for, after the CLI has validated every value. */
export interface ExecRequest {
  readonly target: { readonly pid: number } | { readonly name: string };
  readonly command: readonly string[];
  readonly inVm: boolean;
  readonly interactive: boolean;
  readonly tty: boolean;
  readonly quiet: boolean;
}

export interface ExecEnvironment {
  readonly dataDir: DataDir;
  readonly registry: Registry;
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
}

async function findTarget(request: ExecRequest, env: ExecEnvironment): Promise<VmRecord> {
  await sweepLeftovers(env.registry, env.dataDir);
  return findVm(env.registry, request.target);
}

/** The VM (or clone) a command targets by `--pid` or name; memory servers are not VMs. */
export function findVm(registry: Registry, target: { readonly pid: number } | { readonly name: string }): VmRecord {
  if ('pid' in target) {
    const record = registry.findByPid(target.pid);
    if (!record || record.config.process_type === 'serve') {
      throw new FcvmError('NOT_FOUND', `No running VM belongs to fcvm pid ${target.pid}; see fcvm ls.`);
    }
    return record;
  }
  const matches = registry.findByName(target.name).filter((r) => r.config.process_type !== 'serve');
  if (matches.length === 0) throw new FcvmError('NOT_FOUND', `No running VM is named ${target.name}; see fcvm ls.`);
  if (matches.length > 1) {
    throw usageError(`${matches.length} running VMs are named ${target.name}; pick one with --pid (see fcvm ls).`);
  }
  return matches[0] as VmRecord;
}

export async function execInVm(request: ExecRequest, env: ExecEnvironment): Promise<number> {
  if (request.tty && !env.stdin.isTTY) throw usageError('-t needs a terminal on stdin; leave out -t.');
  const record = await findTarget(request, env);
  const vmDir = env.dataDir.vmDir(record.vm_id);
  const socketPath = join(vmDir, RELAY_SOCKET_NAME);
  if (record.status !== 'running' || !existsSync(socketPath)) {
    throw new FcvmError(
      'NOT_FOUND',
      `VM ${record.name ?? record.vm_id} is not running yet (status ${record.status}); try again.`,
    );
  }
  const token = readFileSync(join(vmDir, RELAY_TOKEN_NAME), 'utf8');
  const client = await AgentClient.connect(connect(socketPath), {
    token,
    timeoutMs: 30_000,
    peer: `the fcvm process that runs VM ${record.name ?? record.vm_id} (pid ${record.pid}, through its relay)`,
  });
  const terminal = request.tty ? ttyTerminal(env.stdout) : null;
  const interactive = request.interactive || request.tty;
  const raw = terminal !== null && env.stdin.isTTY;
  if (raw) env.stdin.setRawMode(true);
  try {
    const exit = await client.exec(
      { command: request.command, inVm: request.inVm, interactive, env: {}, workdir: null },
      { stdout: env.stdout, stderr: env.stderr, stdin: interactive ? env.stdin : null, terminal },
    );
    return exit.exitCode;
  } finally {
    if (raw) env.stdin.setRawMode(false);
    client.destroy();
  }
}
