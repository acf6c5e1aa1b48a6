/**
 * Processes under a pseudo-terminal. Node has no PTY API and the guest has no compiler or Python,
 * but it has util-linux `script`, which allocates a PTY, makes it the controlling terminal of a new
 * session and relays it to its own stdin/stdout: our pipes. What this gives:
 *   - the process sees a real terminal (`tty` succeeds, line discipline, job control);
 *   - a Ctrl-C byte written to stdin becomes SIGINT for the foreground process group;
 *   - the size is set at start (`stty rows R cols C` before exec) and changed later with
 *     `stty -F /dev/pts/N`, which makes the kernel send SIGWINCH to the foreground group. For
 *     `podman run -t` under this PTY, podman sees SIGWINCH and resizes the container's own terminal.
 * `script` only takes a command string (run by `sh -c`), so the argv is quoted for the shell here,
 * in exactly one place. `-e` makes script exit with the command's status (128+N after a signal).
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { TerminalSize } from '@fcvm/protocol';
import { runCommand } from './command.js';
import { type ProcessIo, type SpawnOptions, spawnWithPipes } from './process-io.js';

/** Quotes one word for POSIX sh: inside single quotes only `'` itself needs care. */
export function quoteForShell(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

export function scriptArgv(argv: readonly string[], size: TerminalSize): string[] {
  const command = `stty rows ${size.rows} cols ${size.cols} 2>/dev/null; exec ${argv.map(quoteForShell).join(' ')}`;
  return ['script', '--quiet', '--return', '--command', command, '/dev/null'];
}

export async function spawnWithTerminal(
  argv: readonly string[],
  size: TerminalSize,
  options: SpawnOptions,
): Promise<ProcessIo> {
  const io = await spawnWithPipes(scriptArgv(argv, size), options);
  let terminalPath: Promise<string> | null = null;
  return {
    pid: io.pid,
    stdin: io.stdin,
    stdout: io.stdout,
    // script's own stderr carries only its errors; the program's stderr is the terminal.
    stderr: io.stderr,
    exited: io.exited,
    processExited: io.processExited,
    kill: io.kill,
    async resize(newSize) {
      terminalPath ??= findTerminalOfChild(io.pid);
      const path = await terminalPath;
      await runCommand(['stty', '-F', path, 'rows', String(newSize.rows), 'cols', String(newSize.cols)]);
    },
  };
}

/** The PTY slave that script's child (the shell that execs the program) has as stdin. */
async function findTerminalOfChild(scriptPid: number): Promise<string> {
  for (let attempt = 0; attempt < 50; attempt++) {
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => null);
      if (stat === null) continue; // the process is gone already
      // Fields after the command name: state, ppid, ...
      const afterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(afterName[1]) !== scriptPid) continue;
      const path = await readlink(`/proc/${entry}/fd/0`).catch(() => null);
      if (path?.startsWith('/dev/pts/')) return path;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no terminal found for the process under script (pid ${scriptPid})`);
}
