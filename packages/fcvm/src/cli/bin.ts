/**
 * The executable: run the CLI and exit with the status it returns. `--version` alone answers before
 * the command tree (and the library behind it) is loaded: the bundle is split (scripts/build.mjs).
 */
import { FCVM_VERSION } from '../version.js';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${FCVM_VERSION}\n`);
} else {
  // Stack traces (debug level) point into the sources; only modules loaded from here on pay for it.
  process.setSourceMapsEnabled(true);
  import('./main.js')
    .then(({ main }) => main(process.argv))
    .then(
      (status) => {
        process.exitCode = status;
      },
      (err: unknown) => {
        process.stderr.write(`fcvm: internal error: ${String(err)}\n`);
        process.exitCode = 1;
      },
    );
}
