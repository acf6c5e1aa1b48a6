/**
 * What `fcvm setup` reports while it works. The library emits events; the CLI decides how to show
 * them (a bar on a TTY, plain lines otherwise).
 */
export type SetupEvent =
  | { readonly type: 'step-start'; readonly step: string; readonly label: string }
  /** `fraction` in [0, 1] when the step can tell how far it is. */
  | { readonly type: 'step-progress'; readonly step: string; readonly fraction: number; readonly detail?: string }
  | { readonly type: 'step-end'; readonly step: string; readonly label: string; readonly elapsedMs: number }
  | { readonly type: 'note'; readonly message: string };

export type ProgressListener = (event: SetupEvent) => void;

export type ReportFraction = (fraction: number, detail?: string) => void;

/** Runs one step between a start and an end event (the end event only on success). */
export async function timedStep<T>(
  onProgress: ProgressListener | undefined,
  step: string,
  label: string,
  fn: (report: ReportFraction) => Promise<T>,
): Promise<T> {
  const started = performance.now();
  onProgress?.({ type: 'step-start', step, label });
  const result = await fn((fraction, detail) =>
    onProgress?.({ type: 'step-progress', step, fraction: Math.min(1, Math.max(0, fraction)), detail }),
  );
  onProgress?.({ type: 'step-end', step, label, elapsedMs: performance.now() - started });
  return result;
}
