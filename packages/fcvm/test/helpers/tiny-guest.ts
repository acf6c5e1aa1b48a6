/**
 * A tiny real guest for hypervisor tests: the Debian cloud kernel (downloaded with `apt-get download`
 * from the configured Debian mirror) and a busybox initramfs whose init
 *   - loads the virtio modules (the cloud kernel builds them as modules),
 *   - prints `TINY_DISK <first line of /dev/vda>` and `TINY_NET <eth0 MAC>` when those devices exist,
 *   - echoes every byte received on the `fcvm.agent` virtio-serial port back to the host,
 *   - prints `TINY_COUNT <n>` every 0.5 s forever (how a test sees a guest, or its clone, running).
 *
 * Built once into /var/tmp/fcvm-test-tiny-guest/<hash>/ (about 3 s) and reused. The full fcvm guest
 * (rootfs, agent) is tested elsewhere; this one only needs to boot a real kernel under QEMU.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

const execFileAsync = promisify(execFile);

const CACHE_ROOT = '/var/tmp/fcvm-test-tiny-guest';
const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
/** Load order matters: each module's dependencies come first. */
const MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_mmio',
  'virtio_blk',
  'virtio_console',
  'virtio-rng',
  'failover',
  'net_failover',
  'virtio_net',
];

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${MODULES.join(' ')}; do insmod /lib/modules/$m.ko; done
echo TINY_BOOTED
i=0; while [ ! -b /dev/vda ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] && echo "TINY_DISK $(head -n 1 /dev/vda)"
[ -e /sys/class/net/eth0 ] && echo "TINY_NET $(cat /sys/class/net/eth0/address)"
for p in /sys/class/virtio-ports/*; do
  [ "$(cat $p/name 2>/dev/null)" = fcvm.agent ] && port=/dev/\${p##*/}
done
if [ -n "$port" ]; then
  # Reads return EOF while no host end is connected: keep reopening.
  ( while true; do cat <>"$port" >&0; sleep 0.1; done ) &
fi
n=0
while true; do echo "TINY_COUNT $n"; n=$((n+1)); sleep 0.5; done
`;

export interface TinyGuest {
  readonly kernelPath: string;
  readonly initrdPath: string;
  /** Kernel arguments the guest wants (besides what the backend adds). */
  readonly bootArgs: string;
}

/** One entry of a newc ("SVR4 no CRC") cpio archive, the format the kernel unpacks. */
function cpioEntry(name: string, mode: number, data: Buffer, inode: number): Buffer {
  const field = (value: number): string => value.toString(16).padStart(8, '0');
  const nameBytes = Buffer.from(`${name}\0`);
  const fields = [inode, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
  const header = `070701${fields.map(field).join('')}`;
  const pad = (length: number): Buffer => Buffer.alloc((4 - (length % 4)) % 4);
  const head = Buffer.concat([Buffer.from(header), nameBytes]);
  return Buffer.concat([head, pad(head.length), data, pad(data.length)]);
}

function cpioArchive(entries: readonly { name: string; mode: number; data: Buffer }[]): Buffer {
  const parts = entries.map((entry, index) => cpioEntry(entry.name, entry.mode, entry.data, index + 1));
  parts.push(cpioEntry('TRAILER!!!', 0, Buffer.alloc(0), 0));
  return Buffer.concat(parts);
}

async function kernelPackage(): Promise<string> {
  const { stdout } = await execFileAsync('apt-cache', ['depends', KERNEL_META_PACKAGE]);
  const match = /Depends: (linux-image-\S+-cloud-amd64)\b/.exec(stdout);
  if (match?.[1] === undefined) throw new Error(`apt-cache shows no kernel behind ${KERNEL_META_PACKAGE}`);
  return match[1];
}

async function build(packageName: string, target: string): Promise<void> {
  await mkdir(CACHE_ROOT, { recursive: true });
  const work = await mkdtemp(path.join(CACHE_ROOT, 'build-'));
  try {
    await execFileAsync('apt-get', ['download', packageName], { cwd: work, timeout: 300_000 });
    const [deb] = (await readdir(work)).filter((name) => name.endsWith('.deb'));
    if (deb === undefined) throw new Error(`apt-get download ${packageName} produced no .deb`);
    const tree = path.join(work, 'x');
    await execFileAsync('dpkg-deb', ['-x', path.join(work, deb), tree], { timeout: 300_000 });
    const [release] = await readdir(path.join(tree, 'lib/modules'));
    const moduleFiles = new Map<string, string>();
    const { stdout } = await execFileAsync('find', [path.join(tree, 'lib/modules', release!), '-name', '*.ko']);
    for (const file of stdout.trim().split('\n')) moduleFiles.set(path.basename(file, '.ko'), file);

    const dir = (name: string) => ({ name, mode: 0o040755, data: Buffer.alloc(0) });
    const entries = [
      dir('bin'),
      dir('dev'),
      dir('proc'),
      dir('sys'),
      dir('lib'),
      dir('lib/modules'),
      { name: 'bin/busybox', mode: 0o100755, data: await readFile('/bin/busybox') },
      { name: 'init', mode: 0o100755, data: Buffer.from(INIT) },
    ];
    for (const module of MODULES) {
      const file = moduleFiles.get(module);
      if (file === undefined) throw new Error(`kernel package ${packageName} has no module ${module}`);
      entries.push({ name: `lib/modules/${module}.ko`, mode: 0o100644, data: await readFile(file) });
    }
    const staged = path.join(work, 'out');
    await mkdir(staged);
    await rename(path.join(tree, 'boot', `vmlinuz-${release}`), path.join(staged, 'vmlinuz'));
    await writeFile(path.join(staged, 'initrd.cpio.gz'), gzipSync(cpioArchive(entries), { level: 1 }));
    try {
      await rename(staged, target);
    } catch (err) {
      // A concurrent build published first: use that one.
      if (!existsSync(target)) throw err;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function tinyGuest(): Promise<TinyGuest> {
  const packageName = await kernelPackage();
  const key = createHash('sha256')
    .update(`${packageName}\n${MODULES.join(' ')}\n${INIT}`)
    .digest('hex')
    .slice(0, 16);
  const target = path.join(CACHE_ROOT, key);
  if (!existsSync(path.join(target, 'initrd.cpio.gz'))) await build(packageName, target);
  return {
    kernelPath: path.join(target, 'vmlinuz'),
    initrdPath: path.join(target, 'initrd.cpio.gz'),
    bootArgs: 'quiet',
  };
}
