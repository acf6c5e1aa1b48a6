import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  escapeOptionValue,
  kernelCommandLine,
  type QemuMachine,
  qemuArgs,
} from '../../../../src/hypervisor/qemu/command-line.js';
import { parseCpuMhzAsKhz, parseKernelLogTscKhz } from '../../../../src/hypervisor/qemu/host-clock.js';
import {
  cpuHasVirtualization,
  isSupportedQemuVersion,
  parseQemuVersion,
} from '../../../../src/hypervisor/qemu/probe.js';
import { launcherArgv } from '../../../../src/hypervisor/qemu/qemu-process.js';

const machine: QemuMachine = {
  vmId: 'vm1',
  kernelPath: '/k/vmlinuz',
  initrdPath: '/k/initrd',
  bootArgs: 'quiet fcvm.init=/sbin/x',
  vcpus: 2,
  memoryMib: 512,
  disks: [
    { id: 'rootfs', path: '/vm/root.qcow2', readOnly: false, format: 'qcow2' },
    { id: 'data', path: '/vm/a,b.raw', readOnly: true, format: 'raw' },
  ],
  net: { tapDevice: 'tap0', guestMac: '52:54:00:00:00:01' },
  consoleLogPath: '/vm/console.log',
  memory: { kind: 'file', path: '/vm/memory', shared: true },
  accel: 'kvm-or-tcg',
  tsc: { khz: 2095993, exact: true },
  qmpSocketPath: '/vm/qmp.sock',
  agentSocketPath: '/vm/agent.sock',
  migrationSocketPath: '/vm/migration.sock',
  start: 'paused',
};

/** The value following each occurrence of `flag`. */
function valuesOf(args: readonly string[], flag: string): string[] {
  return args.flatMap((arg, index) => (arg === flag ? [args[index + 1]!] : []));
}

test('boot: microvm on a shared RAM file, CPUs held, KVM with TCG fallback', () => {
  const args = qemuArgs(machine);
  assert.deepEqual(valuesOf(args, '-machine'), ['microvm,memory-backend=ram']);
  assert.deepEqual(valuesOf(args, '-accel'), ['kvm', 'tcg']);
  assert.ok(valuesOf(args, '-object').includes('memory-backend-file,id=ram,size=512M,mem-path=/vm/memory,share=on'));
  assert.ok(args.includes('-S') && !args.includes('-incoming'));
  assert.ok(args.includes('-no-reboot') && args.includes('-nodefaults'));
  assert.deepEqual(valuesOf(args, '-append'), [
    'quiet fcvm.init=/sbin/x console=ttyS0 panic=-1 tsc_early_khz=2095993 tsc=reliable',
  ]);
});

test('devices in guest order: disks (vda, vdb), NIC, entropy, agent port', () => {
  const args = qemuArgs(machine);
  assert.deepEqual(valuesOf(args, '-device'), [
    'virtio-blk-device,drive=disk0',
    'virtio-blk-device,drive=disk1',
    'virtio-net-device,netdev=net0,mac=52:54:00:00:00:01',
    'virtio-rng-device,rng=rng0',
    'virtio-serial-device',
    'virtserialport,chardev=agent,name=fcvm.agent',
  ]);
  assert.deepEqual(valuesOf(args, '-drive'), [
    'id=disk0,file=/vm/root.qcow2,format=qcow2,if=none,cache=unsafe,read-only=off,werror=report,rerror=report',
    'id=disk1,file=/vm/a,,b.raw,format=raw,if=none,cache=writeback,read-only=on,werror=report,rerror=report',
  ]);
  assert.deepEqual(valuesOf(args, '-netdev'), ['tap,id=net0,ifname=tap0,script=no,downscript=no']);
  assert.ok(valuesOf(args, '-chardev').includes('socket,id=agent,path=/vm/agent.sock,server=on,wait=off'));
  assert.ok(valuesOf(args, '-chardev').includes('socket,id=qmp,path=/vm/qmp.sock,server=on,wait=off'));
  assert.ok(valuesOf(args, '-chardev').includes('file,id=console,path=/vm/console.log,append=on'));
});

test('restore: private mapping of the snapshot file, waiting for the incoming stream', () => {
  const args = qemuArgs({
    ...machine,
    memory: { kind: 'file', path: '/snap/memory.bin', shared: false },
    start: 'incoming',
  });
  assert.ok(
    valuesOf(args, '-object').includes('memory-backend-file,id=ram,size=512M,mem-path=/snap/memory.bin,share=off'),
  );
  assert.deepEqual(valuesOf(args, '-incoming'), ['defer']);
  assert.ok(!args.includes('-S'));
});

test('anonymous and hugepage memory; TCG only; no initrd, no NIC', () => {
  const anonymous = qemuArgs({ ...machine, memory: { kind: 'anonymous' }, accel: 'tcg', initrdPath: null, net: null });
  assert.deepEqual(valuesOf(anonymous, '-machine'), ['microvm,memory-backend=ram']);
  assert.ok(valuesOf(anonymous, '-object').includes('memory-backend-ram,id=ram,size=512M'));
  assert.deepEqual(valuesOf(anonymous, '-accel'), ['tcg']);
  assert.deepEqual(valuesOf(anonymous, '-m'), ['512M']);
  assert.ok(!anonymous.includes('-initrd') && !anonymous.includes('-netdev'));
  const huge = qemuArgs({ ...machine, memory: { kind: 'hugetlb' } });
  assert.ok(valuesOf(huge, '-object').includes('memory-backend-memfd,id=ram,size=512M,hugetlb=on,hugetlbsize=2M'));
});

test('a malformed MAC is refused rather than spliced into the NIC options', () => {
  assert.throws(() => qemuArgs({ ...machine, net: { tapDevice: 'tap0', guestMac: '52:54:00:00:00:01,x=y' } }), {
    code: 'CONFIG',
  });
});

test('kernel command line: the caller wins where it set a parameter itself', () => {
  assert.equal(
    kernelCommandLine('console=hvc0 panic=5 tsc_early_khz=1 tsc=unstable', { khz: 2000, exact: true }),
    'console=hvc0 panic=5 tsc_early_khz=1 tsc=unstable',
  );
  assert.equal(kernelCommandLine('', null), 'console=ttyS0 panic=-1');
  // The current clock speed gets the boot past calibration, but the guest must not trust its TSC by it.
  assert.equal(kernelCommandLine('', { khz: 2000, exact: false }), 'console=ttyS0 panic=-1 tsc_early_khz=2000');
});

test('escaping: QEMU option values double their commas', () => {
  assert.equal(escapeOptionValue('/a,b,,c'), '/a,,b,,,,c');
});

test('launcher: parent-death signal first, then the namespace, then QEMU', () => {
  assert.deepEqual(launcherArgv({ binary: 'qemu', args: ['-S'], netnsPath: '/run/netns/n', logPath: '/l' }), [
    'setpriv',
    '--pdeathsig',
    'SIGKILL',
    '--',
    'nsenter',
    '--net=/run/netns/n',
    '--',
    'qemu',
    '-S',
  ]);
  assert.deepEqual(launcherArgv({ binary: 'qemu', args: [], netnsPath: null, logPath: '/l' }), [
    'setpriv',
    '--pdeathsig',
    'SIGKILL',
    '--',
    'qemu',
  ]);
});

test('host facts: TSC kHz, virtualisation flags, QEMU version', () => {
  assert.equal(parseCpuMhzAsKhz('processor\t: 0\ncpu MHz\t\t: 2095.993\n'), 2095993);
  assert.equal(parseCpuMhzAsKhz('processor\t: 0\n'), null);
  const boot = '[    0.000057] tsc: Detected 2596.138 MHz processor\n[    1.1] clocksource: tsc-early: mask\n';
  assert.equal(parseKernelLogTscKhz(boot), 2596138);
  const refined = `${boot}[    2.5] tsc: Refined TSC clocksource calibration: 2596.021 MHz\n`;
  assert.equal(parseKernelLogTscKhz(refined), 2596021, 'the refined calibration wins');
  assert.equal(parseKernelLogTscKhz('[ 0.0] Linux version 6.1\n'), null);
  assert.equal(cpuHasVirtualization('flags\t\t: fpu vme svm sse\n'), true);
  assert.equal(cpuHasVirtualization('flags\t\t: fpu vme sse\nvmx flags\t: none\n'), false);
  const version = parseQemuVersion('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright');
  assert.deepEqual(version, { major: 7, minor: 2, patch: 22, text: '7.2.22' });
  assert.equal(isSupportedQemuVersion(version!), true);
  assert.equal(isSupportedQemuVersion({ major: 6, minor: 1, patch: 0, text: '6.1.0' }), false);
  assert.equal(parseQemuVersion('something else'), null);
});
