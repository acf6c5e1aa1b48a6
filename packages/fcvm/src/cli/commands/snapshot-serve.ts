import { Command } from 'commander';
import { log } from '../../log.js';
import { type SnapshotServe, startSnapshotServe } from '../../uffd/serve-snapshot.js';
import { defineAction } from '../action.js';
import type { CliContext } from '../context.js';
import { parseName } from '../parse.js';

/** A second Ctrl-C within this window stops a server that still has clones. */
const CONFIRM_WINDOW_MS = 3000;

export function snapshotServeCommand(getContext: () => CliContext): Command {
  const command = new Command('serve')
    .description("serve a snapshot's memory to clones over userfaultfd; runs in the foreground and prints its PID")
    .argument('<snapshot>', 'snapshot name', (v) => parseName(v, 'snapshot name'));
  return defineAction(command, async (snapshot: string) => {
    const context = getContext();
    const serve = await startSnapshotServe({ dataDir: context.dataDir, registry: context.registry(), snapshot });
    process.stdout.write(`${process.pid}\n`);
    log.info(`serving snapshot ${snapshot} on ${serve.socketPath}; Ctrl-C stops`);
    await untilShutdown(serve);
    return 0;
  });
}

/** Resolves once the server has stopped: on SIGTERM/SIGHUP, or on Ctrl-C (twice if clones are live). */
function untilShutdown(serve: SnapshotServe): Promise<void> {
  return new Promise((resolve, reject) => {
    let warnedAt = 0;
    const stop = () => {
      process.off('SIGINT', onInterrupt);
      process.off('SIGTERM', stop);
      process.off('SIGHUP', stop);
      serve.stop().then(resolve, reject);
    };
    const onInterrupt = () => {
      const live = serve.liveClones();
      if (live > 0 && Date.now() - warnedAt > CONFIRM_WINDOW_MS) {
        warnedAt = Date.now();
        log.warn(
          `${live} clone(s) still get their memory from this server and will hang without it; press Ctrl-C again within 3 s to stop anyway.`,
        );
        return;
      }
      stop();
    };
    process.on('SIGINT', onInterrupt);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', stop);
  });
}
