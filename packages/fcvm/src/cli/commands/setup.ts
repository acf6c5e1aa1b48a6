import { Command } from 'commander';
import { type AssetStatus, checkAssets, ensureAssets } from '../../assets/index.js';
import { usageError } from '../../errors.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { createSetupProgressView } from '../setup-progress.js';
import { formatTable } from '../table.js';

/**
 * `fcvm setup`: builds what is missing and says where the assets are.
 * `fcvm setup --check [--json]`: builds nothing; exit status 0 when every asset is present, 1 when
 * any is missing.
 */
export function setupCommand(getContext: () => CliContext): Command {
  const command = new Command('setup')
    .description('build the kernel, initramfs, root filesystem and test image that VMs need (once; content-addressed)')
    .option('--force', 'rebuild every asset even if it is present')
    .option('--check', 'only report which assets are present or missing (exit status 1 if any is missing)')
    .option('--json', 'with --check: print JSON on stdout');
  return defineAction(command, async (raw: { force?: boolean; check?: boolean; json?: boolean }) => {
    if (raw.json && !raw.check) throw usageError('--json only applies to `fcvm setup --check`.');
    if (raw.check && raw.force) throw usageError('--check and --force cannot be used together.');
    const context = getContext();
    if (raw.check) {
      const statuses = await checkAssets(context.dataDir, context.config);
      const complete = statuses.every((s) => s.present);
      process.stdout.write(
        raw.json
          ? `${JSON.stringify(checkReport(context.dataDir.root, statuses), null, 2)}\n`
          : `${checkTable(statuses)}\n`,
      );
      return complete ? 0 : 1;
    }
    const view = createSetupProgressView();
    const started = performance.now();
    try {
      await ensureAssets(context.dataDir, context.config, { force: raw.force === true, onProgress: view.onEvent });
    } finally {
      view.stop();
    }
    const elapsed = ((performance.now() - started) / 1000).toFixed(1);
    process.stderr.write(`fcvm setup: assets ready in ${context.dataDir.assets} (${elapsed}s)\n`);
    return 0;
  });
}

export interface CheckReport {
  readonly dataDir: string;
  readonly complete: boolean;
  readonly assets: ReadonlyArray<{ kind: string; name: string; path: string; present: boolean }>;
}

function checkReport(dataDir: string, statuses: readonly AssetStatus[]): CheckReport {
  return {
    dataDir,
    complete: statuses.every((s) => s.present),
    assets: statuses.map(({ kind, name, path, present }) => ({ kind, name, path, present })),
  };
}

function checkTable(statuses: readonly AssetStatus[]): string {
  return formatTable(
    ['ASSET', 'STATUS', 'PATH'],
    statuses.map((s) => [s.kind, s.present ? 'present' : 'missing', s.path]),
  );
}
