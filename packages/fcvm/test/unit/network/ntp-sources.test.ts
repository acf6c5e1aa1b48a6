import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseChronyConfig, readHostNtpSources } from '../../../src/network/ntp-sources.js';

test('server and pool lines become sources, without xleave', () => {
  const { sources } = parseChronyConfig(
    [
      '# comment server not.me',
      '! also a comment',
      'pool 2.debian.pool.org iburst',
      'server 192.0.2.1 iburst xleave minpoll 4',
      'server fe80::1%eth0',
      'makestep 1 3',
    ].join('\n'),
  );
  assert.deepEqual(sources, [
    { kind: 'pool', address: '2.debian.pool.org', options: ['iburst'] },
    { kind: 'server', address: '192.0.2.1', options: ['iburst', 'minpoll', '4'] },
    { kind: 'server', address: 'fe80::1%eth0', options: [] },
  ]);
});

test('confdir and sourcedir files are read; a missing config means no sources', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fcvm-ntp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const confPath = join(dir, 'chrony.conf');
  await writeFile(confPath, `server 192.0.2.1\nconfdir ${dir}/conf.d\nsourcedir ${dir}/sources.d\n`);
  await mkdir(join(dir, 'conf.d'));
  await mkdir(join(dir, 'sources.d'));
  await writeFile(join(dir, 'conf.d', 'a.conf'), 'pool pool.example iburst\n');
  await writeFile(join(dir, 'conf.d', 'ignored.txt'), 'server 198.51.100.1\n');
  await writeFile(join(dir, 'sources.d', 'dhcp.sources'), 'server 203.0.113.5 iburst\n');
  assert.deepEqual(
    readHostNtpSources([confPath]).map((s) => s.address),
    ['192.0.2.1', 'pool.example', '203.0.113.5'],
  );
  assert.deepEqual(readHostNtpSources([join(dir, 'missing.conf')]), []);
});
