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
    // Signal handlers go in first: whoever reads the PID may signal at once, and without a listener
    // Node would die on SIGINT/SIGTERM without removing the socket and the record.
    const shutdown = new ShutdownSignals();
    try {
      const serve = await startSnapshotServe({ dataDir: context.dataDir, registry: context.registry(), snapshot });
      process.stdout.write(`${process.pid}\n`);
      log.info(`serving snapshot ${snapshot} on ${serve.socketPath}; Ctrl-C stops`);
      await shutdown.stopWhenAsked(serve);
    } finally {
      shutdown.dispose();
    }
    return 0;
  });
}

/** SIGTERM/SIGHUP stop at once; Ctrl-C stops at once unless clones are live, then it needs a second one. */
class ShutdownSignals {
  private serve: SnapshotServe | undefined;
  private requested = false;
  private warnedAt = 0;
  private onRequest: (() => void) | undefined;
  private readonly onInterrupt = () => {
    const live = this.serve?.liveClones() ?? 0;
    if (live > 0 && Date.now() - this.warnedAt > CONFIRM_WINDOW_MS) {
      this.warnedAt = Date.now();
      log.warn(
        `${live} clone(s) still get their memory from this server and will hang without it; press Ctrl-C again within 3 s to stop anyway.`,
      );
      return;
    }
    this.request();
  };
  private readonly onTerminate = () => this.request();

  constructor() {
    process.on('SIGINT', this.onInterrupt);
    process.on('SIGTERM', this.onTerminate);
    process.on('SIGHUP', this.onTerminate);
  }

  /** Resolves once a stop was asked for (maybe already during start-up) and the server has stopped. */
  async stopWhenAsked(serve: SnapshotServe): Promise<void> {
    this.serve = serve;
    if (!this.requested) await new Promise<void>((resolve) => (this.onRequest = resolve));
    await serve.stop();
  }

  dispose(): void {
    process.off('SIGINT', this.onInterrupt);
    process.off('SIGTERM', this.onTerminate);
    process.off('SIGHUP', this.onTerminate);
  }

  private request(): void {
    this.requested = true;
    this.onRequest?.();
  }
}
