/**
 * Bridged networking end to end (root): a real QEMU VM in a named namespace behind a veth, NAT and
 * the per-VM nftables table. Published ports answer on the host's own address and on 127.0.0.1;
 * the guest reaches the fake internet (a namespace this test creates) by name; after SIGKILL of
 * fcvm the next command sweeps the namespace, veth and table.
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

interface Record {
  name: string;
  pid: number;
  vm_id: string;
  status: string;
  config: { network: { host_ip: string | null; guest_ip: string | null; namespace_name: string | null } };
}

function records(t: VmTestEnv): Record[] {
  return lsRecords<Record>(t);
}

async function httpBody(url: string): Promise<string | undefined> {
  const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return response.status === 200 ? await response.text() : undefined;
}

/** The address of the host's default-route interface (no traffic: only a route and address lookup). */
function hostAddress(): string {
  const route = execFileSync('ip', ['-o', '-4', 'route', 'show', 'default'], { encoding: 'utf8' });
  const dev = /\bdev (\S+)/.exec(route)?.[1] as string;
  const addr = execFileSync('ip', ['-o', '-4', 'address', 'show', 'dev', dev], { encoding: 'utf8' });
  return (/inet (\S+)\//.exec(addr) as RegExpExecArray)[1] as string;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('bridged networking (qemu, root)', () => {
  let t: VmTestEnv;
  let inet: FakeInternet;
  let run: RunningFcvm;
  let record: Record;
  let port: number;

  before(async () => {
    t = await vmTestEnv('fcvm-netb-');
    inet = await startFakeInternet();
    Object.assign(t.env, { FCVM_DNS: inet.address, FCVM_NTP: inet.address });
    port = await freePort();
    const command = ['sh', '-c', 'mkdir /www && echo bridged > /www/index.html && exec httpd -f -p 80 -h /www'];
    run = spawnFcvm(
      ['podman', 'run', '--name', 'bridged', '--network', 'bridged', ...SMALL, '-p', `${port}:80`, IMAGE, ...command],
      t.env,
    );
    try {
      record = await pollUntil('bridged VM running', 240_000, async () => {
        if (run.child.exitCode !== null) assert.fail(`fcvm exited early: ${run.stderr()}`);
        return records(t).find((r) => r.name === 'bridged' && r.status === 'running');
      });
    } catch (err) {
      t.noteResult({ name: 'the bridged VM starts', passed: false }); // keep its logs
      process.stderr.write(`bridged VM stderr so far:\n${run.stderr()}\n`);
      throw err;
    }
  });

  // A failed test keeps fcvm's debug log and the console logs (test/helpers/vm-env.ts).
  afterEach((test) => t?.noteResult(testResult(test)));

  after(async () => {
    if (run?.child.exitCode === null) run.child.kill('SIGTERM');
    await run?.exited(60_000);
    inet?.stop();
    t?.cleanup();
  });

  test('the guest owns the .2 of a /30 in 172.30.0.0/16; ls shows the host side', () => {
    assert.match(record.config.network.guest_ip ?? '', /^172\.30\.\d+\.\d+$/);
    assert.match(record.config.network.host_ip ?? '', /^172\.30\.\d+\.\d+$/);
    assert.match(fcvmSync(['ls'], t.env).stdout, new RegExp(`bridged .*${record.config.network.host_ip}`));
  });

  test('a published port answers on the host address and on 127.0.0.1 (DNAT)', async () => {
    for (const address of [hostAddress(), '127.0.0.1']) {
      const body = await pollUntil(`httpd via ${address}:${port}`, 120_000, () =>
        httpBody(`http://${address}:${port}/`),
      );
      assert.equal(body, 'bridged\n');
    }
  });

  test('the guest resolves the fake internet by name and reaches it over TCP and UDP', () => {
    const script = `const dns=require('dns'),http=require('http'),dgram=require('dgram');
      dns.lookup('${FAKE_HOSTNAME}',{family:4},(e,address)=>{ if(e) throw e;
        http.get('http://${FAKE_HOSTNAME}/',res=>{let body='';res.on('data',d=>body+=d);res.on('end',()=>{
          const s=dgram.createSocket('udp4');const t=setTimeout(()=>{console.log(JSON.stringify({address,body,udp:null}));process.exit(0)},5000);
          s.on('message',m=>{clearTimeout(t);console.log(JSON.stringify({address,body,udp:String(m)}));process.exit(0)});
          s.send('hi',7,'${FAKE_HOSTNAME}');});});});`;
    const result = fcvmSync(['exec', '--name', 'bridged', '--vm', '--', 'node', '-e', script], t.env);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout.trim()), { address: inet.address, body: HTTP_BODY, udp: 'echo:hi' });
  });

  test('after SIGKILL of fcvm the next command removes the namespace, veth and nftables table', async () => {
    const namespace = record.config.network.namespace_name as string;
    const list = () => ({
      netns: execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(namespace),
      table: execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`table ip ${namespace}`),
      veth: execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).includes(namespace.replace('fcvm-', 'veth0-')),
    });
    assert.deepEqual(list(), { netns: true, table: true, veth: true });
    run.child.kill('SIGKILL');
    await run.exited(60_000);
    assert.deepEqual(list(), { netns: true, table: true, veth: true }, 'a SIGKILLed owner cannot clean up');
    assert.equal(fcvmSync(['ls'], t.env).status, 0);
    assert.deepEqual(list(), { netns: false, table: false, veth: false });
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2_000) }));
  });
});
