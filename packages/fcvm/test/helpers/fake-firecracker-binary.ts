/**
 * Turns test/helpers/fake-firecracker.ts into an executable the adapter can spawn as its
 * "firecracker binary": bundled once per test file with esbuild (fast start-up, no tsx loader in
 * the child), then wrapped in a small shell script that bakes in the fake's knobs.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), 'fake-firecracker.ts');

export async function bundleFakeFirecracker(dir: string): Promise<string> {
  const outfile = join(dir, 'fake-firecracker.mjs');
  await build({
    entryPoints: [SOURCE],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

export interface FakeKnobs {
  readonly FAKE_FC_VERSION?: string;
  readonly FAKE_FC_GUEST_PORTS?: string;
  readonly FAKE_FC_GUEST_GREETING?: string;
  readonly FAKE_FC_IGNORE_CTRL_ALT_DEL?: '1';
  readonly FAKE_FC_DIE_ON?: string;
  readonly FAKE_FC_EXIT_AT_START?: string;
  readonly FAKE_FC_REQUEST_LOG?: string;
}

const shellQuote = (value: string) => `'${value.replaceAll("'", `'\\''`)}'`;

/** Writes an executable named `name` in `dir` that runs the bundled fake with these knobs. */
export function fakeFirecrackerBinary(
  dir: string,
  bundle: string,
  knobs: FakeKnobs = {},
  name = 'firecracker',
): string {
  const path = join(dir, name);
  const exports = Object.entries(knobs)
    .map(([key, value]) => `export ${key}=${shellQuote(String(value))}\n`)
    .join('');
  writeFileSync(path, `#!/bin/sh\n${exports}exec ${shellQuote(process.execPath)} ${shellQuote(bundle)} "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}
