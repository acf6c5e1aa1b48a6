/**
 * The stage-1 initramfs (`initrd-<hash>.cpio.gz`): static busybox, the virtio modules and
 * guest/stage1-init.sh as /init. It is the same for every VM.
 *
 * Per-VM files (the fc-agent bundle, tokens, ...) are never baked in: `createAgentInitrd` appends a
 * second, small gzip'd cpio archive holding /fcvm/... to a copy of the base initrd. Linux unpacks
 * concatenated archives in order, and the stage-1 init copies /fcvm/ into the new root's /run/fcvm
 * (a tmpfs) before switch_root. A new agent build therefore costs a few milliseconds at VM start,
 * never an asset rebuild.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { ArchiveEntry } from './archive-entry.js';
import { memberName } from './archive-entry.js';
import type { StaticBusybox } from './busybox.js';
import { writeCpioNewc } from './cpio.js';
import { readGuestFile } from './guest-files.js';
import { STAGE1_MODULES, stageOneModules } from './kernel-modules.js';
import { inputHash } from './store.js';

/** Bump when the initramfs layout changes in a way its inputs do not show. */
const INITRD_BUILDER_VERSION = 1;

export interface InitrdInputs {
  readonly kernelAsset: string;
  readonly busyboxSha256: string;
  readonly stage1InitSha256: string;
}

export function initrdAssetName(inputs: InitrdInputs): string {
  return `initrd-${inputHash({ builder: INITRD_BUILDER_VERSION, modules: STAGE1_MODULES, ...inputs })}.cpio.gz`;
}

/** Writes the base stage-1 initramfs to `outPath`. */
export async function buildInitrd(options: {
  modulesDir: string;
  busybox: StaticBusybox;
  outPath: string;
}): Promise<void> {
  const modules = await stageOneModules(options.modulesDir);
  const entries: ArchiveEntry[] = [
    ...['bin', 'dev', 'etc', 'lib', 'lib/modules', 'newroot', 'proc', 'run', 'sys', 'tmp'].map(
      (path): ArchiveEntry => ({ type: 'dir', path, mode: 0o755 }),
    ),
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: options.busybox.binary },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', mode: 0o755, data: readGuestFile('stage1Init') },
    {
      type: 'file',
      path: 'etc/fcvm-modules',
      mode: 0o644,
      data: Buffer.from(`${modules.map((m) => m.name).join('\n')}\n`),
    },
    ...modules.map((m): ArchiveEntry => ({ type: 'file', path: `lib/modules/${m.name}.ko`, mode: 0o644, data: m.ko })),
  ];
  await writeFile(options.outPath, gzipSync(writeCpioNewc(entries), { level: 6 }), { mode: 0o644 });
}

export interface InjectedFile {
  /** Path below /run/fcvm in the guest, e.g. "session-token". */
  readonly path: string;
  readonly data: Buffer | string;
  /** Default 0600. */
  readonly mode?: number;
}

export interface AgentInitrdOptions {
  /** The base stage-1 initrd (an asset). */
  readonly baseInitrd: string;
  /** The fc-agent bundle; becomes /run/fcvm/fc-agent.mjs in the guest. */
  readonly agentScript: string;
  /** Written here (the VM's own directory). */
  readonly outPath: string;
  readonly extraFiles?: readonly InjectedFile[];
}

/** Archive entries for /fcvm/... with every parent directory listed first. */
export function injectedEntries(files: readonly InjectedFile[]): ArchiveEntry[] {
  const dirs = new Set<string>(['fcvm']);
  const fileEntries: ArchiveEntry[] = [];
  for (const file of files) {
    const relative = memberName(file.path);
    if (relative === '' || relative.split('/').includes('..')) {
      throw new Error(`injected file path must stay below /run/fcvm: ${file.path}`);
    }
    const path = `fcvm/${relative}`;
    for (let dir = dirname(path); dir !== '.' && dir !== 'fcvm'; dir = dirname(dir)) dirs.add(dir);
    const data = typeof file.data === 'string' ? Buffer.from(file.data, 'utf8') : file.data;
    fileEntries.push({ type: 'file', path, mode: file.mode ?? 0o600, data });
  }
  const dirEntries = [...dirs]
    .sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b))
    .map((path): ArchiveEntry => ({ type: 'dir', path, mode: 0o700 }));
  return [...dirEntries, ...fileEntries];
}

/** Writes the per-VM initrd: base initrd + a cpio with the agent bundle and the extra files. */
export async function createAgentInitrd(options: AgentInitrdOptions): Promise<void> {
  const base = await readFile(options.baseInitrd);
  const agent = await readFile(options.agentScript);
  const files: InjectedFile[] = [{ path: 'fc-agent.mjs', data: agent, mode: 0o644 }, ...(options.extraFiles ?? [])];
  const appended = gzipSync(writeCpioNewc(injectedEntries(files)), { level: 1 });
  // The kernel detects each compressed archive by its magic wherever the previous one ended.
  await writeFile(options.outPath, Buffer.concat([base, appended]), { mode: 0o600 });
}

/**
 * The fc-agent bundle built by scripts/build.mjs: next to build/fcvm.mjs when running from the
 * bundle, in <repo>/build/ when running from the sources. FCVM_AGENT_BUNDLE overrides both.
 */
export function locateAgentBundle(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = [
    env.FCVM_AGENT_BUNDLE,
    fileURLToPath(new URL('./fc-agent.mjs', import.meta.url)),
    fileURLToPath(new URL('../../../../build/fc-agent.mjs', import.meta.url)),
  ];
  return candidates.find((path): path is string => path !== undefined && existsSync(path));
}
