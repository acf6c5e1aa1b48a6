/**
 * fcvm's own diagnostics. They always go to stderr: stdout belongs to container output and to
 * results asked for explicitly (`--json`). Level from `--log-level`, else `FCVM_LOG`, else `warn`.
 */
import { type ConsolaInstance, createConsola } from 'consola';

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

export function setLogLevel(level: LogLevel): void {
  currentLevel = level;
  log.level = CONSOLA_LEVEL[level];
}

export function getLogLevel(): LogLevel {
  return currentLevel;
}
