/**
 * Child program for the "QEMU dies with fcvm" test: boots the VmSpec given as JSON in argv[2] with the
 * qemu backend, writes `QEMU_PID <pid>` on stdout and then waits to be killed.
 */
import { createQemu } from '../../src/hypervisor/qemu/index.js';
import type { VmSpec } from '../../src/hypervisor/types.js';

const spec = JSON.parse(process.argv[2] ?? '') as VmSpec;
const qemu = await createQemu();
const vm = await qemu.boot(spec);
process.stdout.write(`QEMU_PID ${vm.pid}\n`);
// Keeps this process alive until the test kills it (the VM handle alone would too, this makes it explicit).
setInterval(() => {}, 60_000);
