/**
 * The one place that loads libc through koffi (docs/ARCHITECTURE.md, "Native calls"). Other sys/
 * modules declare their functions through `libc()` so the library is loaded once, lazily: commands
 * that never need a system call never pay for loading it.
 */
import koffi, { type LibraryHandle } from 'koffi';

let handle: LibraryHandle | undefined;

export function libc(): LibraryHandle {
  handle ??= koffi.load('libc.so.6');
  return handle;
}

/** errno of the last failed call made through koffi on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

export { koffi };
