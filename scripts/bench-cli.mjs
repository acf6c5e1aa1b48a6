// `npm run bench:cli`: how long `./fcvm --version` takes next to `node -e 0` (the floor of any Node CLI),
// measured in the same run, interleaved, so machine load hits all alike. Prints medians and ratios.
//   node scripts/bench-cli.mjs [runs]   (default 30)
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[2] ?? 30);
const subjects = {
  'node -e 0': [process.execPath, ['-e', '0']],
  './fcvm --version': [join(root, 'fcvm'), ['--version']],
  'node build/fcvm.mjs --version': [process.execPath, [join(root, 'build', 'fcvm.mjs'), '--version']],
  'node build/fcvm.mjs ls --json': [process.execPath, [join(root, 'build', 'fcvm.mjs'), 'ls', '--json']],
};

function timeOnce([file, args]) {
  const start = process.hrtime.bigint();
  const result = spawnSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed: ${result.stderr}`);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const times = Object.fromEntries(Object.keys(subjects).map((name) => [name, []]));
// The first ./fcvm may build; one warm-up round settles caches and the wrapper's stamp.
for (const subject of Object.values(subjects)) timeOnce(subject);
for (let i = 0; i < runs; i++) {
  for (const [name, subject] of Object.entries(subjects)) times[name].push(timeOnce(subject));
}
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const floor = median(times['node -e 0']);
process.stdout.write(`${runs} runs each, interleaved; median wall time:\n`);
for (const [name, values] of Object.entries(times)) {
  const m = median(values);
  process.stdout.write(`  ${name.padEnd(32)} ${m.toFixed(1).padStart(7)} ms  ${(m / floor).toFixed(2)}x node -e 0\n`);
}
