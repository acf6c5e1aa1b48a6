/**
 * Which kernel modules the stage-1 initramfs loads, and in which order. busybox `insmod` does not
 * resolve dependencies, so the order comes from each module's own `depends=` (.modinfo section):
 * loading `virtio` before `virtio_ring` fails with "Unknown symbol".
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FcvmError } from '../errors.js';

/**
 * Modules the guest needs before its root file system is mounted or soon after: the virtio-mmio
 * transport (microvm, Firecracker), block (root disk), console (QEMU's virtio-serial agent
 * channel), vsock (Firecracker's agent channel) and net. Their dependencies are added
 * automatically; anything else the agent loads with modprobe from the root filesystem.
 */
export const STAGE1_MODULES = [
  'virtio_mmio',
  'virtio_blk',
  'virtio_console',
  'vmw_vsock_virtio_transport',
  'virtio_net',
] as const;

/** The `depends=` list in a module's .modinfo strings (empty when it depends on nothing). */
export function moduleDepends(ko: Buffer): string[] {
  const key = Buffer.from('\0depends=');
  const at = ko.indexOf(key);
  if (at < 0) return [];
  const start = at + key.length;
  const end = ko.indexOf(0, start);
  const value = ko.toString('utf8', start, end < 0 ? undefined : end);
  return value
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
}

/** Names in load order: every module after all of its dependencies. */
export function moduleLoadOrder(roots: readonly string[], dependsOf: (name: string) => readonly string[]): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: readonly string[]) => {
    const seen = state.get(name);
    if (seen === 'done') return;
    if (seen === 'visiting') throw new Error(`kernel module dependency cycle: ${[...path, name].join(' -> ')}`);
    state.set(name, 'visiting');
    for (const dep of dependsOf(name)) visit(dep, [...path, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const root of roots) visit(root, []);
  return order;
}

/** Module name -> .ko path under a module tree (`-` and `_` are the same in module names). */
export async function indexModules(modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  const entries = await readdir(join(modulesDir, 'kernel'), { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith('.ko')) continue;
    index.set(entry.name.slice(0, -3).replaceAll('-', '_'), join(entry.parentPath, entry.name));
  }
  return index;
}

export interface StageOneModule {
  readonly name: string;
  readonly ko: Buffer;
}

/** The modules the stage-1 initramfs loads, dependencies first. */
export async function stageOneModules(modulesDir: string): Promise<StageOneModule[]> {
  const index = await indexModules(modulesDir);
  const contents = new Map<string, Buffer>();
  const load = async (name: string): Promise<Buffer> => {
    const cached = contents.get(name);
    if (cached) return cached;
    const path = index.get(name);
    if (path === undefined) {
      throw new FcvmError('ASSET_BUILD', `The guest kernel has no module ${name} (uncompressed .ko) in ${modulesDir}.`);
    }
    const ko = await readFile(path);
    contents.set(name, ko);
    for (const dep of moduleDepends(ko)) await load(dep);
    return ko;
  };
  for (const root of STAGE1_MODULES) await load(root);
  const order = moduleLoadOrder(STAGE1_MODULES, (name) => moduleDepends(contents.get(name)!));
  return order.map((name) => ({ name, ko: contents.get(name)! }));
}
