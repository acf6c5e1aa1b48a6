/**
 * Every resource a VM acquires registers its release here, right after acquiring it. Teardown
 * runs the releases in reverse order, logs a failed step and carries on with the next, and runs
 * only once however often it is asked for (a second caller waits for the first teardown).
 */
import { log } from '../log.js';

type Release = () => void | Promise<void>;

export class CleanupStack {
  private readonly steps: Array<{ name: string; release: Release }> = [];
  private running: Promise<void> | undefined;

  /** Registers `release` under a name used in logs. */
  defer(name: string, release: Release): void {
    if (this.running) throw new Error(`cleanup already started; cannot defer ${name}`);
    this.steps.push({ name, release });
  }

  get disposed(): boolean {
    return this.running !== undefined;
  }

  dispose(): Promise<void> {
    this.running ??= this.runAll();
    return this.running;
  }

  private async runAll(): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step.release();
        log.debug(`cleanup: ${step.name}`);
      } catch (err) {
        log.warn(`cleanup: ${step.name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
