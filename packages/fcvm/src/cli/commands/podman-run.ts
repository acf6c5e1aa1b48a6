import { Command, Option } from 'commander';
import { HYPERVISOR_CHOICES, type HypervisorChoice } from '../../config.js';
import { FcvmError, usageError } from '../../errors.js';
import { runContainer } from '../../vm/run.js';
import type { RunRequest } from '../../vm/run-request.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import {
  collect,
  NETWORK_MODES,
  type NetworkMode,
  type PortMapping,
  parseCpu,
  parseEnvList,
  parseExistingFile,
  parseLabel,
  parseMap,
  parseMem,
  parseName,
  parsePublish,
  parseSize,
  splitCommas,
  type VolumeMapping,
} from '../parse.js';
import { createSetupProgressView } from '../setup-progress.js';

interface RawOptions {
  name: string;
  cpu: number | 'unlimited';
  mem: number | 'unlimited';
  hugepages?: boolean;
  env?: Array<[string, string]>;
  label?: Array<[string, string]>;
  publish?: PortMapping[];
  map?: VolumeMapping[];
  network: NetworkMode;
  healthCheck?: string;
  healthCheckTimeout: number;
  user?: string;
  cmd?: string;
  interactive?: boolean;
  tty?: boolean;
  privileged?: boolean;
  hypervisor: HypervisorChoice;
  /** false when --no-swap was given */
  swap?: boolean;
  rootfsSize?: number;
  kernel?: string;
}

export function podmanRunCommand(getContext: () => CliContext): Command {
  const command = new Command('run')
    .description('run a container in a new microVM; stays in the foreground and exits with the container status')
    .argument('<image>', 'image: localhost/NAME, a registry reference, docker-archive:PATH or oci-archive:PATH')
    .argument('[command...]', 'command and arguments for the container (after IMAGE, or after --)')
    .requiredOption('--name <name>', 'VM name: 1-63 of [A-Za-z0-9_-], not starting with -', (v) => parseName(v))
    .option('--cpu <count>', 'vCPUs, or "unlimited" (host CPUs, at most 32)', parseCpu, 2)
    .option('--mem <mib>', 'guest memory in MiB, or "unlimited"', parseMem, 2048)
    .option('--hugepages', 'back guest memory with 2 MiB huge pages (--mem must be even)')
    .option(
      '-e, --env <KEY=VALUE>',
      'container environment; repeatable or comma-separated',
      collect((v) => parseEnvList(v)),
    )
    .option(
      '--label <KEY=VALUE>',
      'metadata shown by fcvm ls --json; repeatable',
      collect((v) => [parseLabel(v)]),
    )
    .option(
      '-p, --publish <[IP:]HOST:GUEST[/PROTO]>',
      'publish a guest port; repeatable or comma-separated',
      collect((v) => splitCommas(v, '--publish').map((item) => parsePublish(item))),
    )
    .option(
      '--map <HOST:GUEST[:ro]>',
      'share a host directory with the container; repeatable or comma-separated',
      collect((v) => splitCommas(v, '--map').map((item) => parseMap(item))),
    )
    .addOption(
      new Option('--network <mode>', 'network mode (bridged and routed need root)')
        .choices(NETWORK_MODES)
        .default('rootless'),
    )
    .option(
      '--health-check <url>',
      'guest HTTP URL (port = guest port, reached through its --publish) that must answer 2xx for the VM to count as healthy',
      parseUrl,
    )
    .option('--health-check-timeout <seconds>', 'how long one health-check answer may take', parseTimeoutSeconds, 5)
    .option('--user <UID[:GID]>', 'run the container as this user', parseUser)
    .option('--cmd <string>', 'container command as one shell-style string (instead of trailing arguments)')
    .option('-i, --interactive', 'forward stdin to the container')
    .option('-t, --tty', 'give the container a terminal')
    .option('--privileged', 'run the container privileged')
    .addOption(new Option('--hypervisor <kind>', 'VMM backend').choices(HYPERVISOR_CHOICES).default('auto'))
    .option('--no-swap', "keep the VM's memory out of host swap (own cgroup scope; needs root)")
    .option('--rootfs-size <size>', 'minimum free space on the root disk, e.g. 10G', (v) =>
      parseSize(v, '--rootfs-size'),
    )
    .option('--kernel <path>', 'boot this kernel instead of the one fcvm set up', (v) =>
      parseExistingFile(v, '--kernel'),
    )
    .passThroughOptions();

  return defineAction(command, async (image: string, trailing: string[], raw: RawOptions) => {
    const request = toRunRequest(image, trailing, raw);
    const context = getContext();
    const view = createSetupProgressView();
    try {
      return await runContainer(request, {
        dataDir: context.dataDir,
        config: context.config,
        registry: context.registry(),
        onSetupProgress: view.onEvent,
        stdin: process.stdin,
        stdout: process.stdout,
        stderr: process.stderr,
      });
    } finally {
      view.stop();
    }
  });
}

function parseTimeoutSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || seconds <= 0 || seconds > 3600) {
    throw usageError(`Invalid --health-check-timeout '${value}': give seconds, more than 0 and at most 3600.`);
  }
  return seconds;
}

function parseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`Invalid --health-check '${value}': not a URL.`);
  }
  if (url.protocol !== 'http:') throw usageError(`Invalid --health-check '${value}': only http:// URLs are supported.`);
  return value;
}

function parseUser(value: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/.test(value)) {
    throw usageError(`Invalid --user '${value}': expected USER or UID, optionally followed by :GROUP or :GID.`);
  }
  return value;
}

/** Cross-flag rules that single-value parsers cannot see. */
export function toRunRequest(image: string, trailing: readonly string[], raw: RawOptions): RunRequest {
  if (image.startsWith('-')) throw usageError(`Invalid image '${image}': an image reference cannot start with '-'.`);
  if (raw.cmd !== undefined && trailing.length > 0) {
    throw usageError('Give the container command either with --cmd or after the image, not both.');
  }
  if (raw.hugepages && typeof raw.mem === 'number' && raw.mem % 2 !== 0) {
    throw usageError(`Invalid --mem '${raw.mem}': with --hugepages the memory must be an even number of MiB.`);
  }
  if (raw.network !== 'rootless' && process.getuid?.() !== 0) {
    throw new FcvmError(
      'NEEDS_ROOT',
      `--network ${raw.network} needs root; run fcvm as root or use --network rootless.`,
    );
  }
  return {
    name: raw.name,
    image,
    // `IMAGE -- CMD...`: the separator is not part of the command.
    command:
      raw.cmd !== undefined ? splitShellWords(raw.cmd) : trailing[0] === '--' ? trailing.slice(1) : [...trailing],
    vcpus: raw.cpu,
    memoryMib: raw.mem,
    hugepages: raw.hugepages === true,
    env: raw.env ?? [],
    labels: Object.fromEntries(raw.label ?? []),
    publish: raw.publish ?? [],
    volumes: raw.map ?? [],
    network: raw.network,
    healthCheckUrl: raw.healthCheck ?? null,
    healthCheckTimeoutMs: raw.healthCheckTimeout * 1000,
    user: raw.user ?? null,
    interactive: raw.interactive === true,
    tty: raw.tty === true,
    privileged: raw.privileged === true,
    hypervisor: raw.hypervisor,
    noSwap: raw.swap === false,
    rootfsSizeBytes: raw.rootfsSize ?? null,
    kernelPath: raw.kernel ?? null,
  };
}

/** Minimal POSIX-shell word splitting for --cmd: quotes and backslashes, no expansion. */
export function splitShellWords(input: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < input.length; i++) {
    const ch = input[i] as string;
    if (quote === "'") {
      if (ch === "'") quote = null;
      else current += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = null;
      else if (ch === '\\' && i + 1 < input.length && '"\\$`'.includes(input[i + 1] as string)) current += input[++i];
      else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < input.length) {
      current += input[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (quote !== null) throw usageError(`Invalid --cmd '${input}': unterminated ${quote} quote.`);
  if (inWord) words.push(current);
  if (words.length === 0) throw usageError('Invalid --cmd: the command is empty.');
  return words;
}
