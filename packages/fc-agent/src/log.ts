/**
 * The agent's diagnostics. They go to stderr, which the guest init connects to the serial console
 * (the host keeps it in the VM's console log). Lines start with `fc-agent:` so they stand out among
 * kernel messages. Not for hot paths: console writes can block the event loop.
 */
export function logLine(message: string): void {
  process.stderr.write(`fc-agent: ${message}\n`);
}

export function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
