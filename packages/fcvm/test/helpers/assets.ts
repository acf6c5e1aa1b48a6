/**
 * VM assets for tests, built once per machine into a shared cache and reused by every test run
 * (and every test file): `FCVM_TEST_ASSETS_DIR`, default /var/tmp/fcvm-test-assets. It is an fcvm
 * data dir; only its assets/ (and tmp/ while building) are used. A fresh CI machine builds it in
 * the first VM test that asks (about half a minute plus downloads); later calls return at once.
 */

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type AssetPaths, ensureAssets } from '../../src/assets/index.js';
import { parseConfig } from '../../src/config.js';
import { type DataDir, dataDir } from '../../src/data-dir.js';
import { REPO_ROOT } from './cli.js';

export const DEFAULT_TEST_ASSETS_DIR = '/var/tmp/fcvm-test-assets';

export function testAssetsDataDir(env: NodeJS.ProcessEnv = process.env): DataDir {
  return dataDir(env.FCVM_TEST_ASSETS_DIR || DEFAULT_TEST_ASSETS_DIR);
}

let pending: Promise<AssetPaths> | undefined;

/**
 * Builds what is missing (with the default config: the user's config never leaks into tests) and
 * returns the asset paths. Progress goes to stderr so a slow first build is visible in the log.
 */
export function testAssets(): Promise<AssetPaths> {
  pending ??= ensureAssets(testAssetsDataDir(), parseConfig('', 'test defaults'), {
    onProgress: (event) => {
      if (event.type === 'step-start') process.stderr.write(`test assets: building ${event.label}...\n`);
      if (event.type === 'step-end') {
        process.stderr.write(`test assets: built ${event.label} in ${(event.elapsedMs / 1000).toFixed(1)}s\n`);
      }
    },
  });
  return pending;
}

/** The fc-agent bundle (build/fc-agent.mjs), built first if this checkout has none. */
export function agentBundle(): string {
  const path = join(REPO_ROOT, 'build', 'fc-agent.mjs');
  if (!existsSync(path)) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: REPO_ROOT, stdio: 'inherit' });
  return path;
}
