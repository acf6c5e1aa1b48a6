// `npm run stress` (not part of CI): many `fcvm podman run`s, first one after another, then M at a time,
// each with `fcvm exec` sessions into it while it runs. Reports failures and p50/p99 wall times.
//   node scripts/stress.mjs [--runs N] [--concurrent M] [--hypervisor qemu] [--image REF]
// Uses FCVM_DATA_DIR (or fcvm's default data dir); the assets must be set up (fcvm setup).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'build', 'fcvm.mjs');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '50' },
    concurrent: { type: 'string', default: '4' },
    hypervisor: { type: 'string', default: 'qemu' },
    image: { type: 'string', default: 'localhost/fcvm-busybox' },
    'timeout-s': { type: 'string', default: '600' },
  },
});
const runs = Number(values.runs);
const concurrent = Number(values.concurrent);
const timeoutMs = Number(values['timeout-s']) * 1000;

function fcvm(args, deadlineMs = timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bundle, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal === 'SIGKILL' ? 137 : 143), stdout, stderr });
    });
  });
}

/** One run: a container that prints, sleeps and exits 3; execs into it until two have answered. */
async function oneRun(name) {
  const start = performance.now();
  const run = fcvm([
    'podman',
    'run',
    '--name',
    name,
    '--mem',
    '512',
    '--cpu',
    '1',
    '--hypervisor',
    values.hypervisor,
    values.image,
    'sh',
    '-c',
    'echo started; sleep 8; echo finished; exit 3',
  ]);
  let finished = false;
  run.then(() => (finished = true));
  let execsOk = 0;
  let execFailures = 0;
  let firstExecError = '';
  while (!finished && execsOk < 2) {
    const exec = await fcvm(['exec', '--name', name, '--', 'sh', '-c', 'echo exec-ok'], 60_000);
    if (exec.status === 0 && exec.stdout === 'exec-ok\n') execsOk++;
    else if (exec.status !== 3 && !/not running/.test(exec.stderr)) {
      // 3: no such VM yet (or any more); "not running": the VM is up, its container not yet (or no more)
      execFailures++;
      firstExecError ||= `exit ${exec.status}: ${exec.stderr.trim().split('\n').at(-1)}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const result = await run;
  const ms = performance.now() - start;
  const ok = result.status === 3 && result.stdout === 'started\nfinished\n';
  const problems = [];
  if (!ok)
    problems.push(
      `run exit ${result.status}, stdout ${JSON.stringify(result.stdout)}: ${result.stderr.trim().split('\n').at(-1)}`,
    );
  if (execsOk < 2) problems.push(`only ${execsOk} exec(s) answered`);
  if (execFailures > 0) problems.push(`${execFailures} exec(s) failed (first: ${firstExecError})`);
  return { ms, problems };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function phase(label, count, parallel) {
  const results = [];
  let next = 0;
  const worker = async (slot) => {
    while (next < count) {
      const index = next++;
      const result = await oneRun(`stress-${label}-${slot}-${index}`);
      results.push(result);
      const status = result.problems.length === 0 ? 'ok' : `FAILED: ${result.problems.join('; ')}`;
      process.stdout.write(`${label} ${index + 1}/${count}: ${(result.ms / 1000).toFixed(1)} s ${status}\n`);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: parallel }, (_, slot) => worker(slot)));
  const sorted = results.map((r) => r.ms).sort((a, b) => a - b);
  const failures = results.filter((r) => r.problems.length > 0).length;
  return {
    label,
    count,
    parallel,
    failures,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1),
    wall: performance.now() - started,
  };
}

const summaries = [await phase('sequential', runs, 1), await phase('concurrent', runs, concurrent)];
process.stdout.write('\nphase       runs  parallel  failures  p50 s   p99 s   max s   wall s\n');
for (const s of summaries) {
  const f = (ms) => (ms / 1000).toFixed(1).padStart(6);
  process.stdout.write(
    `${s.label.padEnd(11)} ${String(s.count).padStart(4)}  ${String(s.parallel).padStart(8)}  ${String(s.failures).padStart(8)}  ${f(s.p50)}  ${f(s.p99)}  ${f(s.max)}  ${f(s.wall)}\n`,
  );
}
process.exitCode = summaries.some((s) => s.failures > 0) ? 1 : 0;
