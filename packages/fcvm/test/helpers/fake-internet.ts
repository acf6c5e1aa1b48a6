/**
 * A "fake internet" for network tests: a network namespace this test creates, joined to the host by
 * a veth pair on a /30 from 198.18.0.0/15 (the benchmarking range, never routed on the internet),
 * with servers inside it: HTTP on 80, a UDP echo on 7, a TCP discard on 9 (holds each connection
 * open until its peer ends it), and a DNS responder on 53 that answers
 * `NAME` (A record) with the namespace's address and NXDOMAIN for anything else. Guests reach it
 * through their mode's path (pasta or NAT) like any outside address; nothing leaves the machine.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const FAKE_HOSTNAME = 'www.fake-internet.test';
/** TCP port of the discard server: connections to it stay open. */
export const DISCARD_PORT = 9;
export const HTTP_BODY = 'hello from the fake internet\n';

export interface FakeInternet {
  readonly namespace: string;
  /** The servers' address (inside the namespace). */
  readonly address: string;
  /** The host's end of the veth. */
  readonly hostAddress: string;
  readonly hostLink: string;
  stop(): void;
}

/** The servers, run by node inside the namespace; prints `ready` once all four listen. */
const SERVER_SCRIPT = `
const http = require('node:http');
const net = require('node:net');
const dgram = require('node:dgram');
const [address, name, body] = process.argv.slice(1);
// Ends with the test that started it, even if the test dies without stopping it.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 1000);
let pending = 4;
const ready = () => { if (--pending === 0) console.log('ready'); };
http.createServer((req, res) => res.end(body)).listen(80, address, ready);
net.createServer((socket) => { socket.on('error', () => {}); socket.resume(); }).listen(9, address, ready);
const echo = dgram.createSocket('udp4');
echo.on('message', (msg, from) => echo.send(Buffer.concat([Buffer.from('echo:'), msg]), from.port, from.address));
echo.bind(7, address, ready);
const dns = dgram.createSocket('udp4');
dns.on('message', (query, from) => {
  let offset = 12;
  const labels = [];
  while (query[offset] !== 0 && offset < query.length) {
    labels.push(query.subarray(offset + 1, offset + 1 + query[offset]).toString());
    offset += query[offset] + 1;
  }
  const question = query.subarray(12, offset + 5);
  const qtype = query.readUInt16BE(offset + 1);
  const known = labels.join('.').toLowerCase() === name;
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  header.writeUInt16BE(known ? 0x8180 : 0x8183, 2);
  header.writeUInt16BE(1, 4);
  const answer = Buffer.alloc(16);
  if (known && qtype === 1) {
    header.writeUInt16BE(1, 6);
    answer.writeUInt16BE(0xc00c, 0);
    answer.writeUInt16BE(1, 2);
    answer.writeUInt16BE(1, 4);
    answer.writeUInt32BE(60, 6);
    answer.writeUInt16BE(4, 10);
    address.split('.').forEach((octet, i) => { answer[12 + i] = Number(octet); });
  }
  dns.send(Buffer.concat([header, question, known && qtype === 1 ? answer : Buffer.alloc(0)]), from.port, from.address);
});
dns.bind(53, address, ready);
`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function startFakeInternet(): Promise<FakeInternet> {
  const tag = randomBytes(3).toString('hex');
  const namespace = `fcvmt-inet-${tag}`;
  const hostLink = `fti${tag}h`;
  const nsLink = `fti${tag}n`;
  // A /30 in 198.18.0.0/15 chosen from the tag, so concurrent test files rarely collide.
  const block = (Number.parseInt(tag, 16) % 32768) * 4;
  const base = `198.${18 + Math.floor(block / 65536)}.${Math.floor(block / 256) % 256}`;
  const hostAddress = `${base}.${(block % 256) + 1}`;
  const address = `${base}.${(block % 256) + 2}`;
  let server: ChildProcess | undefined;
  const stop = (): void => {
    // `ip netns exec` execs node in place: the child is the server itself.
    if (server?.exitCode === null) server.kill('SIGKILL');
    server?.stdout?.destroy();
    try {
      ip('netns', 'del', namespace);
    } catch {
      // Already gone.
    }
    try {
      ip('link', 'del', hostLink);
    } catch {
      // Went with the namespace.
    }
  };
  try {
    ip('netns', 'add', namespace);
    ip('-n', namespace, 'link', 'set', 'lo', 'up');
    ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink, 'netns', namespace);
    ip('address', 'add', `${hostAddress}/30`, 'dev', hostLink);
    ip('link', 'set', hostLink, 'up');
    ip('-n', namespace, 'address', 'add', `${address}/30`, 'dev', nsLink);
    ip('-n', namespace, 'link', 'set', nsLink, 'up');
    ip('-n', namespace, 'route', 'add', 'default', 'via', hostAddress);
    server = spawn(
      'ip',
      ['netns', 'exec', namespace, process.execPath, '-e', SERVER_SCRIPT, address, FAKE_HOSTNAME, HTTP_BODY],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('fake internet servers did not start in 10 s')), 10_000);
      server?.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server?.once('exit', () => {
        clearTimeout(timer);
        reject(new Error('fake internet servers exited'));
      });
    });
  } catch (err) {
    stop();
    throw err;
  }
  return { namespace, address, hostAddress, hostLink, stop };
}
