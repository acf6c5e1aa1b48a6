/**
 * The test image `localhost/fcvm-busybox:latest`: the host's static busybox with its applet links,
 * /etc/passwd and /etc/group, as a docker-archive that `podman load` accepts. Tests (and users)
 * run it with no registry; its `httpd` applet serves the HTTP checks.
 */
import { writeFile } from 'node:fs/promises';
import type { ArchiveEntry } from './archive-entry.js';
import { busyboxAppletPaths, type StaticBusybox } from './busybox.js';
import type { DebianArch } from './kernel.js';
import { inputHash, sha256OfText } from './store.js';
import { writeTar } from './tar.js';

const TEST_IMAGE_BUILDER_VERSION = 1;

export const TEST_IMAGE_REF = 'localhost/fcvm-busybox:latest';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';

export function testImageAssetName(busyboxSha256: string, arch: DebianArch): string {
  return `fcvm-busybox-${inputHash({ builder: TEST_IMAGE_BUILDER_VERSION, busyboxSha256, arch, ref: TEST_IMAGE_REF })}.tar`;
}

/** The image's single layer: busybox, one symlink per applet, and the account files. */
export async function testImageLayer(busybox: StaticBusybox): Promise<Buffer> {
  const applets = await busyboxAppletPaths(busybox);
  const dirs = new Set<string>(['bin', 'etc', 'root', 'tmp', 'var', 'var/www']);
  for (const applet of applets) {
    const parts = applet.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const modes: Record<string, number> = { tmp: 0o1777, root: 0o700 };
  const entries: ArchiveEntry[] = [
    ...[...dirs].sort().map((path): ArchiveEntry => ({ type: 'dir', path, mode: modes[path] ?? 0o755 })),
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: busybox.binary },
    ...applets.map((path): ArchiveEntry => ({ type: 'symlink', path, target: '/bin/busybox' })),
    { type: 'file', path: 'etc/passwd', mode: 0o644, data: Buffer.from(PASSWD) },
    { type: 'file', path: 'etc/group', mode: 0o644, data: Buffer.from(GROUP) },
  ];
  return writeTar(entries);
}

/** Writes the docker-archive (manifest.json, image config, one layer) to `outPath`. */
export async function buildTestImage(options: {
  busybox: StaticBusybox;
  arch: DebianArch;
  outPath: string;
}): Promise<void> {
  const layer = await testImageLayer(options.busybox);
  const diffId = sha256OfText(layer);
  const config = {
    architecture: options.arch,
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['sh'],
      WorkingDir: '/',
    },
    rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: 'fcvm setup: busybox-static test image' }],
  };
  const configJson = Buffer.from(JSON.stringify(config));
  const configName = `${sha256OfText(configJson)}.json`;
  const manifest = [{ Config: configName, RepoTags: [TEST_IMAGE_REF], Layers: [`${diffId}/layer.tar`] }];
  const archive = writeTar([
    { type: 'file', path: 'manifest.json', mode: 0o644, data: Buffer.from(JSON.stringify(manifest)) },
    { type: 'file', path: configName, mode: 0o644, data: configJson },
    { type: 'dir', path: diffId, mode: 0o755 },
    { type: 'file', path: `${diffId}/layer.tar`, mode: 0o644, data: layer },
  ]);
  await writeFile(options.outPath, archive, { mode: 0o644 });
}
