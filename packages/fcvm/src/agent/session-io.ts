/**
 * The local end of an interactive session (container run or exec): where output goes, where input
 * comes from, and the terminal, if any. The CLI passes process.stdout/stderr/stdin; tests pass
 * PassThrough streams. Output bytes are written untouched: no prefixes, no re-encoding.
 */
import type { Readable, Writable } from 'node:stream';
import type { Notice, TerminalSize } from '@fcvm/protocol';

export interface LocalTerminal {
  size(): TerminalSize;
  /** Calls `listener` on every size change; returns the unsubscribe function. */
  onResize(listener: (size: TerminalSize) => void): () => void;
}

export interface SessionIo {
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Forwarded to the remote stdin; its end closes the remote stdin. null: nothing to send. */
  readonly stdin: Readable | null;
  /** Present when the session runs under a PTY. */
  readonly terminal: LocalTerminal | null;
  /** Progress of a container run (phases, started, health). */
  readonly onNotice?: (notice: Notice) => void;
  readonly onStarted?: () => void;
}

/**
 * A LocalTerminal for a TTY the user is sitting at (stdout's size, SIGWINCH via 'resize'). The
 * caller puts stdin into raw mode itself (setRawMode) and restores it afterwards.
 */
export function ttyTerminal(output: NodeJS.WriteStream): LocalTerminal {
  return {
    size: () => ({ rows: output.rows || 24, cols: output.columns || 80 }),
    onResize(listener) {
      const handler = (): void => listener({ rows: output.rows || 24, cols: output.columns || 80 });
      output.on('resize', handler);
      return () => output.off('resize', handler);
    },
  };
}
