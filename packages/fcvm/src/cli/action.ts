/**
 * Commands return their exit status from their action; commander does not carry return values,
 * so the wrapper keeps it for `main` to read once parsing is done.
 */
import type { Command } from 'commander';

let exitStatus = 0;

/** `fn` receives commander's action arguments; it returns the exit status (undefined = 0). */
export function defineAction<A extends unknown[]>(
  command: Command,
  fn: (...args: A) => Promise<number | undefined> | number | undefined,
): Command {
  return command.action(async (...args: unknown[]) => {
    exitStatus = (await fn(...(args as A))) ?? 0;
  });
}

export function takeExitStatus(): number {
  const status = exitStatus;
  exitStatus = 0;
  return status;
}
