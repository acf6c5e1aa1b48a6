/**
 * Every invalid command line exits 2 with one sentence on stderr naming the bad value, no stack
 * trace and nothing on stdout.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCliAsync, tempDataDir } from '../../helpers/cli.js';

const cases: Array<[string, string[], RegExp]> = [
  ['missing --name', ['podman', 'run', 'img'], /--name/],
  ['empty name', ['podman', 'run', '--name', '', 'img'], /Invalid --name ''/],
  ['name starting with -', ['podman', 'run', '--name=-web', 'img'], /Invalid --name '-web'/],
  ['name with a dot', ['podman', 'run', '--name', 'a.b', 'img'], /Invalid --name 'a\.b'/],
  ['name with a slash', ['podman', 'run', '--name', 'a/b', 'img'], /Invalid --name 'a\/b'/],
  ['name of 64 characters', ['podman', 'run', '--name', 'a'.repeat(64), 'img'], /Invalid --name/],
  ['missing image', ['podman', 'run', '--name', 'web'], /missing required argument 'image'/i],
  ['cpu zero', ['podman', 'run', '--name', 'web', '--cpu', '0', 'img'], /Invalid --cpu '0'/],
  ['cpu not a number', ['podman', 'run', '--name', 'web', '--cpu', 'two', 'img'], /Invalid --cpu 'two'/],
  ['cpu too many', ['podman', 'run', '--name', 'web', '--cpu', '33', 'img'], /Invalid --cpu '33'/],
  ['cpu negative', ['podman', 'run', '--name', 'web', '--cpu=-1', 'img'], /Invalid --cpu '-1'/],
  ['mem too small', ['podman', 'run', '--name', 'web', '--mem', '64', 'img'], /Invalid --mem '64'/],
  ['mem with unit', ['podman', 'run', '--name', 'web', '--mem', '1G', 'img'], /Invalid --mem '1G'/],
  ['odd mem with hugepages', ['podman', 'run', '--name', 'web', '--hugepages', '--mem', '1025', 'img'], /even/],
  ['publish one port', ['podman', 'run', '--name', 'web', '--publish', '8080', 'img'], /Invalid --publish '8080'/],
  ['publish port 0', ['podman', 'run', '--name', 'web', '--publish', '0:80', 'img'], /port '0'/],
  ['publish port too big', ['podman', 'run', '--name', 'web', '-p', '70000:80', 'img'], /port '70000'/],
  ['publish bad protocol', ['podman', 'run', '--name', 'web', '-p', '80:80/sctp', 'img'], /protocol 'sctp'/],
  [
    'publish bad IPv4',
    ['podman', 'run', '--name', 'web', '-p', '300.1.1.1:80:80', 'img'],
    /'300\.1\.1\.1' is not an IPv4/,
  ],
  ['publish bad IPv6', ['podman', 'run', '--name', 'web', '-p', '[zz]:80:80', 'img'], /not an IPv6/],
  ['publish too many parts', ['podman', 'run', '--name', 'web', '-p', '1:2:3:4', 'img'], /Invalid --publish/],
  ['publish empty comma item', ['podman', 'run', '--name', 'web', '-p', '80:80,', 'img'], /empty item/],
  ['map without guest path', ['podman', 'run', '--name', 'web', '--map', '/tmp', 'img'], /expected HOST:GUEST/],
  ['map host path missing', ['podman', 'run', '--name', 'web', '--map', '/no/such/dir:/data', 'img'], /does not exist/],
  ['map relative guest path', ['podman', 'run', '--name', 'web', '--map', '/tmp:data', 'img'], /not absolute/],
  ['map bad mode', ['podman', 'run', '--name', 'web', '--map', '/tmp:/data:rx', 'img'], /mode 'rx'/],
  ['env without =', ['podman', 'run', '--name', 'web', '--env', 'FOO', 'img'], /Invalid --env 'FOO'/],
  ['env bad key', ['podman', 'run', '--name', 'web', '-e', '1X=2', 'img'], /Invalid --env '1X=2'/],
  ['label without =', ['podman', 'run', '--name', 'web', '--label', 'tier', 'img'], /Invalid --label 'tier'/],
  ['unknown network', ['podman', 'run', '--name', 'web', '--network', 'host', 'img'], /'host' is invalid/],
  ['unknown hypervisor', ['podman', 'run', '--name', 'web', '--hypervisor', 'xen', 'img'], /'xen' is invalid/],
  ['health check not a URL', ['podman', 'run', '--name', 'web', '--health-check', 'nope', 'img'], /not a URL/],
  ['health check https', ['podman', 'run', '--name', 'web', '--health-check', 'https://x/', 'img'], /only http/],
  [
    'health check port not published',
    ['podman', 'run', '--name', 'web', '-p', '8080:81', '--health-check', 'http://localhost/', 'img'],
    /guest port 80, which is not published; add --publish HOSTPORT:80/,
  ],
  [
    'health check timeout not a number',
    ['podman', 'run', '--name', 'web', '--health-check-timeout', 'soon', 'img'],
    /Invalid --health-check-timeout 'soon'/,
  ],
  ['routed network not there yet', ['podman', 'run', '--name', 'web', '--network', 'routed', 'img'], /routed/],
  ['bad user', ['podman', 'run', '--name', 'web', '--user', 'a b', 'img'], /Invalid --user/],
  ['cmd and trailing command', ['podman', 'run', '--name', 'web', '--cmd', 'ls', 'img', 'ls'], /either with --cmd/],
  ['cmd unterminated quote', ['podman', 'run', '--name', 'web', '--cmd', "echo 'a", 'img'], /unterminated/],
  ['rootfs size garbage', ['podman', 'run', '--name', 'web', '--rootfs-size', 'big', 'img'], /Invalid --rootfs-size/],
  [
    'unknown flag',
    ['podman', 'run', '--name', 'web', '--bogus', 'img'],
    /unknown option '--bogus'.*fcvm podman run --help/i,
  ],
  ['kernel that does not exist', ['podman', 'run', '--name', 'web', '--kernel', '/nonexistent', 'img'], /no such file/],
  ['kernel that is a directory', ['podman', 'run', '--name', 'web', '--kernel', '/tmp', 'img'], /not a regular file/],
  ['exec without target', ['exec', '--', 'ls'], /--pid PID or --name NAME/],
  ['exec with both targets', ['exec', '--pid', '5', '--name', 'web', '--', 'ls'], /not both/],
  ['exec bad pid', ['exec', '--pid', 'abc', '--', 'ls'], /Invalid --pid 'abc'/],
  ['exec without command', ['exec', '--name', 'web'], /missing required argument 'command'/i],
  ['ls bad pid', ['ls', '--pid', '0'], /Invalid --pid '0'/],
  ['snapshot run without source', ['snapshot', 'run'], /--pid SERVE_PID or --snapshot NAME/],
  ['snapshot run with both sources', ['snapshot', 'run', '--pid', '9', '--snapshot', 's'], /not both/],
  ['snapshot run bad name', ['snapshot', 'run', '--snapshot', 's', '--name', 'x y'], /Invalid --name 'x y'/],
  ['snapshot run empty exec', ['snapshot', 'run', '--snapshot', 's', '--exec', ' '], /--exec/],
  ['snapshot create without target', ['snapshot', 'create'], /give its name or --pid/],
  ['snapshot create bad tag', ['snapshot', 'create', 'web', '--tag', 'a:b'], /Invalid --tag 'a:b'/],
  ['snapshot serve bad name', ['snapshot', 'serve', '../etc'], /Invalid snapshot name '\.\.\/etc'/],
  ['snapshots ls bad filter', ['snapshots', 'ls', '--filter', 'all'], /'all' is invalid/],
  ['completions unknown shell', ['completions', 'tcsh'], /'tcsh' is invalid/],
  ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/i],
  ['unknown subcommand', ['snapshot', 'frobnicate'], /unknown command 'frobnicate'/i],
  ['bad log level', ['--log-level', 'loud', 'ls'], /'loud' is invalid/],
];

describe('invalid command lines exit 2 with one clear sentence', () => {
  let data: ReturnType<typeof tempDataDir>;
  before(() => {
    data = tempDataDir();
  });
  after(() => data.cleanup());

  test(`there are at least 40 cases (${cases.length})`, () => {
    assert.ok(cases.length >= 40);
  });

  for (const [title, args, expected] of cases) {
    test(title, async () => {
      const result = await runCliAsync(args, { FCVM_DATA_DIR: data.path });
      assert.equal(result.status, 2, `exit status for ${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout, '');
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line expected, got:\n${result.stderr}`);
      assert.match(lines[0] ?? '', /^fcvm: /);
      assert.match(lines[0] ?? '', expected);
      assert.doesNotMatch(result.stderr, /\bat .+:\d+:\d+\)?$/m, 'no stack trace');
    });
  }
});

describe('a data directory that cannot be one exits 2 with one sentence', () => {
  let data: ReturnType<typeof tempDataDir>;
  before(() => {
    data = tempDataDir();
  });
  after(() => data.cleanup());

  for (const [title, relative] of [
    ['FCVM_DATA_DIR naming a file', 'a-file'],
    ['FCVM_DATA_DIR below a file', 'a-file/data'],
  ] as const) {
    test(title, async () => {
      writeFileSync(join(data.path, 'a-file'), 'not a directory');
      const result = await runCliAsync(['ls'], { FCVM_DATA_DIR: join(data.path, relative) });
      assert.equal(result.status, 2, result.stderr);
      assert.equal(result.stdout, '');
      assert.match(
        result.stderr.trim(),
        /^fcvm: The data directory cannot be used: .*a-file.* is a file\. Point FCVM_DATA_DIR/,
      );
      assert.equal(result.stderr.trim().split('\n').length, 1);
    });
  }
});
