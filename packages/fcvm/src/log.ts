/**
 * fcvm's own diagnostics. They always go to stderr: stdout belongs to container output and to
 * results asked for explicitly (`--json`). Level from `--log-level`, else `FCVM_LOG`, else `warn`.
 * `FCVM_DEBUG_LOG=PATH` also appends every line down to debug level to PATH, whatever the stderr
 * level (the VM tests keep that file when a test fails).
 */
import { appendFileSync } from 'node:fs';
import { format } from 'node:util';
import { type ConsolaInstance, type ConsolaReporter, createConsola } from 'consola';

export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const CONSOLA_LEVEL: Record<LogLevel, number> = {
  silent: -999,
  error: 0,
  warn: 1,
  info: 3,
  debug: 4,
  trace: 5,
};

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

function initialLevel(): LogLevel {
  const env = process.env.FCVM_LOG?.trim().toLowerCase();
  return env !== undefined && isLogLevel(env) ? env : 'warn';
}

let currentLevel: LogLevel = initialLevel();

export const log: ConsolaInstance = createConsola({
  level: CONSOLA_LEVEL[currentLevel],
  stdout: process.stderr,
  stderr: process.stderr,
  formatOptions: { date: false, colors: process.stderr.isTTY === true },
});

const debugLogPath = process.env.FCVM_DEBUG_LOG?.trim() || undefined;
if (debugLogPath !== undefined) {
  const toStderr = [...log.options.reporters];
  const filtered: ConsolaReporter = {
    log(entry, context) {
      if (entry.level > CONSOLA_LEVEL[currentLevel]) return;
      for (const reporter of toStderr) reporter.log(entry, context);
    },
  };
  const toFile: ConsolaReporter = {
    log(entry) {
      const line = `${new Date().toISOString()} ${process.pid} [${entry.type}] ${format(...entry.args)}\n`;
      try {
        appendFileSync(debugLogPath, line);
      } catch {
        // A debug log that cannot be written must not fail the command.
      }
    },
  };
  log.setReporters([filtered, toFile]);
  log.level = CONSOLA_LEVEL.debug;
}

export function setLogLevel(level: LogLevel): void {
  currentLevel = level;
  if (debugLogPath === undefined) log.level = CONSOLA_LEVEL[level];
}

export function getLogLevel(): LogLevel {
  return currentLevel;
}
