/**
 * Clones of a bridged VM (root, QEMU): one bridged VM publishing a port is snapshotted and two
 * clones start at once. Both keep the snapshot's guest address, each behind its own veth /30 and
 * in-namespace NAT; each answers on its own host address and reaches the fake internet by name;
 * once they end (one stopped, one SIGKILLed and swept by the next command), nothing of their
 * network (namespace, veth, nftables tables) is left.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { FAKE_HOSTNAME, type FakeInternet, HTTP_BODY, startFakeInternet } from '../helpers/fake-internet.js';
import {
  fcvmSync,
  lsRecords,
  pollUntil,
  type RunningFcvm,
  spawnFcvm,
  testResult,
  type VmTestEnv,
  vmTestEnv,
} from '../helpers/vm-env.js';

const IMAGE = 'localhost/fcvm-busybox';
const SMALL = ['--mem', '512', '--cpu', '2', '--hypervisor', 'qemu'];
const CLONES = ['clone1', 'clone2'];

interface Record {
  name: string;
  vm_id: string;
  status: string;
  config: { network: { host_ip: string | null; guest_ip: string | null; namespace_name: string | null } };
}

async function httpBody(url: string): Promise<string | undefined> {
  const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return response.status === 200 ? await response.text() : undefined;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Which of a VM's host-side network objects exist. */
function networkLeft(namespace: string): { netns: boolean; table: boolean; veth: boolean } {
  return {
    netns: execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(namespace),
    table: execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`table ip ${namespace}`),
    veth: execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).includes(namespace.replace('fcvm-', 'veth0-')),
  };
}

describe('clones of a bridged VM (qemu, root)', () => {
  let t: VmTestEnv;
  let inet: FakeInternet;
  let port: number;
  const running: RunningFcvm[] = [];
  let clones: Record[] = [];

  before(async () => {
    t = await vmTestEnv('fcvm-netbc-');
    inet = await startFakeInternet();
    Object.assign(t.env, { FCVM_DNS: inet.address, FCVM_NTP: inet.address });
    port = await freePort();
    const command = ['sh', '-c', 'mkdir /www && echo bridged > /www/index.html && exec httpd -f -p 80 -h /www'];
    const baseline = spawnFcvm(
      ['podman', 'run', '--name', 'base', '--network', 'bridged', ...SMALL, '-p', `${port}:80`, IMAGE, ...command],
      t.env,
    );
    running.push(baseline);
    await pollUntil('baseline httpd', 300_000, async () => {
      if (baseline.child.exitCode !== null) assert.fail(`fcvm exited early: ${baseline.stderr()}`);
      return httpBody(`http://127.0.0.1:${port}/`).catch(() => undefined);
    });
    const created = fcvmSync(['snapshot', 'create', 'base'], t.env);
    assert.equal(created.status, 0, created.stderr);
    for (const name of CLONES) {
      running.push(spawnFcvm(['snapshot', 'run', '--snapshot', 'base', '--name', name], t.env));
    }
    clones = await pollUntil('both clones running', 240_000, async () => {
      for (const run of running) if (run.child.exitCode !== null) assert.fail(`fcvm exited early: ${run.stderr()}`);
      const live = lsRecords<Record>(t).filter((r) => CLONES.includes(r.name) && r.status === 'running');
      return live.length === CLONES.length
        ? CLONES.map((name) => live.find((r) => r.name === name) as Record)
        : undefined;
    });
  });

  // A failed test keeps fcvm's debug log and the console logs (test/helpers/vm-env.ts).
  afterEach((test) => t?.noteResult(testResult(test)));

  after(async () => {
    for (const run of running) if (run.child.exitCode === null) run.child.kill('SIGTERM');
    await Promise.all(running.map((run) => run.exited(60_000)));
    inet?.stop();
    t?.cleanup();
  });

  test("both clones keep the snapshot's guest address; each has its own host address in ls", () => {
    const base = lsRecords<Record>(t).find((r) => r.name === 'base') as Record;
    const hosts = clones.map((c) => c.config.network.host_ip);
    assert.deepEqual(
      clones.map((c) => c.config.network.guest_ip),
      [base.config.network.guest_ip, base.config.network.guest_ip],
    );
    assert.equal(new Set([...hosts, base.config.network.host_ip]).size, 3, `distinct host addresses: ${hosts}`);
    const ls = fcvmSync(['ls'], t.env).stdout;
    for (const clone of clones) assert.match(ls, new RegExp(`${clone.name} .*${clone.config.network.host_ip}`));
  });

  test('each clone answers on its own host address at the published port', async () => {
    for (const clone of clones) {
      const url = `http://${clone.config.network.host_ip}:${port}/`;
      assert.equal(await pollUntil(url, 60_000, () => httpBody(url).catch(() => undefined)), 'bridged\n');
    }
  });

  test('each clone resolves the fake internet by name and fetches from it', async () => {
    const script = `require('http').get('http://${FAKE_HOSTNAME}/',r=>{let b='';r.on('data',d=>b+=d);r.on('end',()=>{console.log(b);process.exit(0)})}).on('error',e=>{console.error(e.message);process.exit(1)})`;
    for (const clone of clones) {
      const body = await pollUntil(`${clone.name} reaches ${FAKE_HOSTNAME}`, 90_000, async () => {
        const result = fcvmSync(['exec', '--name', clone.name, '--vm', '--', 'node', '-e', script], t.env);
        return result.status === 0 ? result.stdout.trim() : undefined;
      });
      assert.equal(body, HTTP_BODY.trim());
    }
  });

  test("after the clones end (SIGTERM; SIGKILL and the next command's sweep) nothing of their network is left", async () => {
    const base = lsRecords<Record>(t).find((r) => r.name === 'base') as Record;
    const [stopped, killed] = running.slice(1) as [RunningFcvm, RunningFcvm];
    const [stoppedNs, killedNs] = clones.map((c) => c.config.network.namespace_name as string) as [string, string];
    stopped.child.kill('SIGTERM');
    killed.child.kill('SIGKILL');
    assert.equal(await stopped.exited(60_000), 143, stopped.stderr());
    await killed.exited(60_000);
    assert.deepEqual(networkLeft(stoppedNs), { netns: false, table: false, veth: false });
    assert.deepEqual(
      networkLeft(killedNs),
      { netns: true, table: true, veth: true },
      'a SIGKILLed owner cannot clean up',
    );
    assert.equal(fcvmSync(['ls'], t.env).status, 0);
    assert.deepEqual(networkLeft(killedNs), { netns: false, table: false, veth: false });
    assert.deepEqual(networkLeft(base.config.network.namespace_name as string), {
      netns: true,
      table: true,
      veth: true,
    });
  });
});
