/** The executable: run the CLI and exit with the status it returns. */
import { main } from './main.js';

main(process.argv).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    process.stderr.write(`fcvm: internal error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
