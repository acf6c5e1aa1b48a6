/**
 * Rootless networking end to end: real QEMU VMs in their own user + net namespaces, real pasta, a
 * fake internet in a namespace this test creates (HTTP, UDP echo, DNS). Traffic goes only to
 * loopback and to that namespace: the guests' DNS and NTP settings point at the test's servers.
 * Two VMs are booted once and shared by the tests of this file (VM boots are slow under emulation).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { FAKE_HOSTNAME, type FakeInternet, HTTP_BODY, startFakeInternet } from '../helpers/fake-internet.js';
import {
  fcvmSync,
  lsRecords,
  pollUntil,
  processesMatching,
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
  status: string;
  children: { pid: number; role: string }[];
  config: { network: { loopback_ip: string | null; guest_ip: string | null } };
}

function records(t: VmTestEnv): Record[] {
  return lsRecords<Record>(t);
}

async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return { status: response.status, body: await response.text() };
}

function udpRequest(host: string, port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no UDP answer from ${host}:${port}`));
    }, 2_000);
    socket.on('message', (reply) => {
      clearTimeout(timer);
      socket.close();
      resolve(reply.toString());
    });
    socket.send(message, port, host);
  });
}

/** Host-visible traces of fcvm networking: namespaces, links, nft tables, loopback addresses. */
function hostNetworkState(): { netns: string[]; links: string[]; nftTables: string[]; loAddresses: string[] } {
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
  return {
    netns: run('ip', ['netns', 'list'])
      .split('\n')
      .filter((l) => l.startsWith('fcvm-'))
      .sort(),
    links: run('ip', ['-o', 'link'])
      .split('\n')
      .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
      .filter((n) => /^(tap-|veth|fcvm)/.test(n))
      .sort(),
    nftTables: run('nft', ['list', 'tables'])
      .split('\n')
      .filter((l) => l.includes('fcvm'))
      .sort(),
    loAddresses: run('ip', ['-o', 'address', 'show', 'dev', 'lo'])
      .split('\n')
      .map((l) => l.split(/\s+/)[3])
      .filter((a): a is string => a !== undefined && a !== '127.0.0.1/8' && a !== '::1/128'),
  };
}

/** A guest script run by the guest's Node (exec --vm): prints one line of JSON. */
function guestNode(t: VmTestEnv, name: string, script: string): string {
  const result = fcvmSync(['exec', '--name', name, '--vm', '--', 'node', '-e', script], t.env);
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.trim();
}

/** httpd serving `content`; with `gate`, only once the file /tmp/go exists (the test creates it). */
function httpdCommand(content: string, gate: boolean): string[] {
  const wait = gate ? 'while [ ! -e /tmp/go ]; do sleep 0.2; done && ' : '';
  return ['sh', '-c', `mkdir /www && echo ${content} > /www/index.html && ${wait}exec httpd -f -p 80 -h /www`];
}

describe('rootless networking (qemu)', () => {
  let t: VmTestEnv;
  let inet: FakeInternet;
  let hostService: Server;
  const runs: RunningFcvm[] = [];
  const vm: { [name: string]: Record } = {};

  before(async () => {
    t = await vmTestEnv('fcvm-net-');
    inet = await startFakeInternet();
    // The guest's resolver and clock sources: the test's own servers only.
    Object.assign(t.env, { FCVM_DNS: inet.address, FCVM_NTP: inet.address });
    hostService = createServer((_req, res) => res.end('host loopback service\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '127.0.0.1', resolve));
    for (const name of ['neta', 'netb']) {
      const flags =
        name === 'neta'
          ? ['--publish', '8080:80', '--publish', '9090:9090/udp']
          : ['-p', '8080:80', '--health-check', 'http://localhost:80/', '--health-check-timeout', '2'];
      const command = httpdCommand(`content-${name}`, name === 'netb');
      runs.push(spawnFcvm(['podman', 'run', '--name', name, ...SMALL, ...flags, IMAGE, ...command], t.env));
    }
    for (const name of ['neta', 'netb']) {
      vm[name] = await pollUntil(`${name} running`, 240_000, async () => {
        for (const run of runs) if (run.child.exitCode !== null) assert.fail(`fcvm exited early: ${run.stderr()}`);
        return records(t).find((r) => r.name === name && r.status === 'running');
      });
    }
  });

  // A failed test keeps fcvm's debug log and the console logs (test/helpers/vm-env.ts).
  afterEach((test) => t?.noteResult(testResult(test)));

  after(async () => {
    for (const run of runs) if (run.child.exitCode === null) run.child.kill('SIGTERM');
    for (const run of runs) await run.exited(60_000);
    hostService?.close();
    inet?.stop();
    t?.cleanup();
  });

  test('--health-check turns healthy only once httpd answers through the published port', async () => {
    // The container runs but httpd waits for /tmp/go: the URL does not answer yet.
    await pollUntil('netb container running', 120_000, async () => {
      const run = spawnFcvm(['exec', '--name', 'netb', '--', 'true'], t.env);
      return (await run.exited(60_000)) === 0 ? true : undefined;
    });
    const early = records(t).find((r) => r.name === 'netb') as Record & { health_status: string };
    assert.notEqual(early.health_status, 'healthy');
    const go = spawnFcvm(['exec', '--name', 'netb', '--', 'touch', '/tmp/go'], t.env);
    assert.equal(await go.exited(60_000), 0, go.stderr());
    await pollUntil('netb healthy', 60_000, async () =>
      (records(t).find((r) => r.name === 'netb') as { health_status?: string } | undefined)?.health_status === 'healthy'
        ? true
        : undefined,
    );
  });

  test('two VMs publish the same port, each on its own loopback address with its own content', async () => {
    const a = vm.neta?.config.network.loopback_ip;
    const b = vm.netb?.config.network.loopback_ip;
    assert.ok(a && b && a !== b, `distinct loopback addresses: ${a} ${b}`);
    assert.match(a, /^127\.0\.\d+\.\d+$/);
    assert.equal(vm.neta?.config.network.guest_ip, '10.0.2.100');
    for (const [name, address] of [
      ['neta', a],
      ['netb', b],
    ] as const) {
      const body = await pollUntil(`${name} httpd`, 120_000, async () => {
        const response = await httpGet(`http://${address}:8080/`);
        return response.status === 200 ? response.body : undefined;
      });
      assert.equal(body, `content-${name}\n`);
    }
    const ls = fcvmSync(['ls'], t.env);
    assert.match(ls.stdout, new RegExp(`neta .*${a.replaceAll('.', '\\.')}`));
  });

  test('a published UDP port reaches a UDP server in the guest', async () => {
    const address = vm.neta?.config.network.loopback_ip as string;
    const server = spawnFcvm(
      [
        'exec',
        '--name',
        'neta',
        '--vm',
        '--',
        'node',
        '-e',
        "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send('guest:'+m,r.port,r.address));s.bind(9090);setTimeout(()=>process.exit(0),120000)",
      ],
      t.env,
    );
    try {
      const reply = await pollUntil('UDP echo through the published port', 60_000, () =>
        udpRequest(address, 9090, 'ping'),
      );
      assert.equal(reply, 'guest:ping');
    } finally {
      server.child.kill('SIGTERM');
      await server.exited(30_000);
    }
  });

  test('the guest resolves a name at the test DNS server and reaches it over TCP and UDP', () => {
    const out = guestNode(
      t,
      'neta',
      `const dns=require('dns'),http=require('http'),dgram=require('dgram');
       dns.lookup('${FAKE_HOSTNAME}',{family:4},(e,address)=>{ if(e) throw e;
         http.get('http://${FAKE_HOSTNAME}/',res=>{let body='';res.on('data',d=>body+=d);res.on('end',()=>{
           const s=dgram.createSocket('udp4');const t=setTimeout(()=>{console.log(JSON.stringify({address,body,udp:null}));process.exit(0)},5000);
           s.on('message',m=>{clearTimeout(t);console.log(JSON.stringify({address,body,udp:String(m)}));process.exit(0)});
           s.send('hi',7,'${FAKE_HOSTNAME}');});});});`,
    );
    const result = JSON.parse(out) as { address: string; body: string; udp: string | null };
    assert.equal(result.address, inet.address);
    assert.equal(result.body, HTTP_BODY);
    assert.equal(result.udp, 'echo:hi');
  });

  test('the guest reaches a service on the host loopback through 10.0.2.2', async () => {
    const port = (hostService.address() as AddressInfo).port;
    // Asynchronously: the service answers from this very process.
    const run = spawnFcvm(['exec', '--name', 'netb', '--', 'wget', '-qO-', `http://10.0.2.2:${port}/`], t.env);
    assert.equal(await run.exited(120_000), 0, run.stderr());
    assert.equal(run.stdout(), 'host loopback service\n');
  });

  test('a published port already taken on its address is refused before the VM boots', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const run = spawnFcvm(
        ['podman', 'run', '--name', 'taken', ...SMALL, '-p', `127.0.0.1:${port}:80`, IMAGE, 'true'],
        t.env,
      );
      assert.equal(await run.exited(60_000), 2, run.stderr());
      assert.match(run.stderr(), new RegExp(`Port 127\\.0\\.0\\.1:${port}/tcp is already in use`));
      assert.equal(
        records(t).find((r) => r.name === 'taken'),
        undefined,
      );
    } finally {
      blocker.close();
    }
  });

  test('after SIGTERM and after SIGKILL nothing of the VM network is left', async () => {
    const before = hostNetworkState();
    for (const [name, signal] of [
      ['netb', 'SIGTERM'],
      ['neta', 'SIGKILL'],
    ] as const) {
      const record = vm[name] as Record;
      const run = runs.find((r) => r.child.pid === record.pid) as RunningFcvm;
      const helpers = record.children.filter((c) => c.role === 'pasta' || c.role === 'netns-holder');
      assert.equal(helpers.length, 2, `holder and pasta recorded: ${JSON.stringify(record.children)}`);
      const address = record.config.network.loopback_ip as string;
      run.child.kill(signal);
      await run.exited(60_000);
      fcvmSync(['ls'], t.env); // sweeps what a SIGKILLed owner left
      await pollUntil(`${name}'s helpers gone`, 20_000, async () =>
        helpers.every((h) => !processAlive(h.pid)) ? true : undefined,
      );
      await assert.rejects(httpGet(`http://${address}:8080/`), `nothing listens on ${address}:8080 any more`);
    }
    assert.deepEqual(processesMatching(t.dataDir), [], 'no pasta or VMM of this test left');
    assert.deepEqual(hostNetworkState(), before);
    assert.deepEqual(hostNetworkState().loAddresses, [], 'no address added to lo');
  });
});

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
