/**
 * One of many concurrent registry users (registry.test.ts). argv: STATE_DIR INDEX ROUNDS.
 * Saves its record, updates it ROUNDS times while reading everything and sweeping, prints
 * "done <invalid reads>", then either exits at once (even INDEX: leaves a stale record) or waits
 * for stdin to close (odd INDEX: stays alive).
 */
import { Registry } from '../../src/state/registry.js';

const [stateDir, indexText, roundsText] = process.argv.slice(2);
const index = Number(indexText);
const rounds = Number(roundsText);
const registry = new Registry(stateDir as string);
const vmId = `vm-worker-${index}`;

await registry.save({
  vm_id: vmId,
  name: `w${index}`,
  pid: process.pid,
  status: 'running',
  config: { labels: { count: '0' } },
});
let badReads = 0;
for (let round = 1; round <= rounds; round++) {
  await registry.update(vmId, (record) => ({
    ...record,
    config: { ...record.config, labels: { count: String(round) } },
  }));
  const all = registry.readAll();
  if (!all.some((r) => r.vm_id === vmId)) badReads++;
  if (round % 5 === 0) await registry.sweep();
}
process.stdout.write(`done ${badReads}\n`);
if (index % 2 === 1) {
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}
