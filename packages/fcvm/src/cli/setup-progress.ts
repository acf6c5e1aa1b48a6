/**
 * How `fcvm setup` shows progress on stderr: on a TTY a bar per step (percentage, elapsed time),
 * otherwise one plain line when a step starts and one when it ends, with its elapsed time.
 */
import { SingleBar } from 'cli-progress';
import type { SetupEvent } from '../assets/progress.js';

export interface SetupProgressView {
  onEvent(event: SetupEvent): void;
  /** Stops a bar left running by a failed step. */
  stop(): void;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export function createSetupProgressView(stream: NodeJS.WriteStream = process.stderr): SetupProgressView {
  return stream.isTTY ? ttyView(stream) : lineView(stream);
}

function lineView(stream: NodeJS.WritableStream): SetupProgressView {
  return {
    onEvent(event) {
      switch (event.type) {
        case 'step-start':
          stream.write(`fcvm setup: building ${event.label}...\n`);
          break;
        case 'step-end':
          stream.write(`fcvm setup: built ${event.label} in ${seconds(event.elapsedMs)}\n`);
          break;
        case 'note':
          stream.write(`fcvm setup: ${event.message}\n`);
          break;
        case 'step-progress':
          break;
      }
    },
    stop() {},
  };
}

function ttyView(stream: NodeJS.WriteStream): SetupProgressView {
  let bar: SingleBar | undefined;
  const stopBar = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    onEvent(event) {
      switch (event.type) {
        case 'step-start':
          stopBar();
          bar = new SingleBar({
            stream,
            format: `{label} [{bar}] {percentage}% | {duration}s | {detail}`,
            hideCursor: true,
            clearOnComplete: true,
            barsize: 24,
          });
          bar.start(100, 0, { label: event.label, detail: '' });
          break;
        case 'step-progress':
          bar?.update(Math.round(event.fraction * 100), { detail: event.detail ?? '' });
          break;
        case 'step-end':
          stopBar();
          stream.write(`fcvm setup: built ${event.label} in ${seconds(event.elapsedMs)}\n`);
          break;
        case 'note':
          stream.write(`fcvm setup: ${event.message}\n`);
          break;
      }
    },
    stop: stopBar,
  };
}
