/**
 * Entry point of the `fcvm` CLI: builds the command tree, parses, runs one command, and is the
 * only place that turns errors into messages and exit statuses.
 */
import { Command, CommanderError, Option } from 'commander';
import { isFcvmError } from '../errors.js';
import { isLogLevel, LOG_LEVELS, log, setLogLevel } from '../log.js';
import { FCVM_VERSION } from '../version.js';
import { takeExitStatus } from './action.js';
import { completionsCommand } from './commands/completions.js';
import { execCommand } from './commands/exec.js';
import { lsCommand } from './commands/ls.js';
import { podmanRunCommand } from './commands/podman-run.js';
import { setupCommand } from './commands/setup.js';
import { snapshotCreateCommand } from './commands/snapshot-create.js';
import { snapshotLsCommand } from './commands/snapshot-ls.js';
import { snapshotRunCommand } from './commands/snapshot-run.js';
import { snapshotServeCommand } from './commands/snapshot-serve.js';
import { snapshotsDeleteCommand } from './commands/snapshots-delete.js';
import { snapshotsLsCommand } from './commands/snapshots-ls.js';
import { snapshotsPruneCommand } from './commands/snapshots-prune.js';
import { type CliContext, createContext } from './context.js';

export function buildProgram(getContext: () => CliContext): Command {
  const program = new Command('fcvm')
    .description('Run Podman containers inside Firecracker or QEMU microVMs, snapshot them and clone them.')
    .version(FCVM_VERSION, '-V, --version', 'print the version')
    .addOption(
      new Option('--log-level <level>', 'diagnostics on stderr (default: $FCVM_LOG or warn)').choices(LOG_LEVELS),
    )
    .option('--config <path>', 'config file (default: $FCVM_CONFIG, ~/.config/fcvm/config.toml, /etc/fcvm/config.toml)')
    .enablePositionalOptions()
    .showSuggestionAfterError(true);

  program.hook('preAction', (thisCommand) => {
    const level = thisCommand.opts().logLevel as string | undefined;
    if (level !== undefined && isLogLevel(level)) setLogLevel(level);
  });

  const podman = new Command('podman')
    .description('podman-compatible commands, each run in its own microVM')
    .enablePositionalOptions();
  podman.addCommand(podmanRunCommand(getContext));
  program.addCommand(podman);

  program.addCommand(execCommand(getContext));
  program.addCommand(lsCommand(getContext));

  const snapshot = new Command('snapshot').description('snapshot running VMs, serve snapshot memory, run clones');
  snapshot.addCommand(snapshotCreateCommand(getContext));
  snapshot.addCommand(snapshotServeCommand(getContext));
  snapshot.addCommand(snapshotRunCommand(getContext));
  snapshot.addCommand(snapshotLsCommand(getContext));
  program.addCommand(snapshot);

  const snapshots = new Command('snapshots').description('manage snapshots stored on disk');
  snapshots.addCommand(snapshotsLsCommand(getContext));
  snapshots.addCommand(snapshotsDeleteCommand(getContext));
  snapshots.addCommand(snapshotsPruneCommand(getContext));
  program.addCommand(snapshots);

  program.addCommand(setupCommand(getContext));
  program.addCommand(completionsCommand(() => program));

  applyToAll(program, (command) => {
    command.exitOverride((err) => {
      helpHint.set(err, commandPath(command));
      throw err;
    });
    command.configureOutput({ outputError: () => {} });
  });
  return program;
}

function applyToAll(command: Command, fn: (command: Command) => void): void {
  fn(command);
  for (const sub of command.commands) applyToAll(sub, fn);
}

export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Which command's --help to point to, per commander error. */
const helpHint = new WeakMap<CommanderError, string>();

/** Commander's messages start with "error: "; we print one sentence with a pointer to --help. */
function commanderMessage(err: CommanderError): string {
  let message = err.message.replace(/^error:\s*/, '').trim();
  message = message.charAt(0).toUpperCase() + message.slice(1);
  if (!/[.!?]$/.test(message)) message += '.';
  return message;
}

export async function main(argv: readonly string[] = process.argv): Promise<number> {
  let context: CliContext | undefined;
  let configPath: string | undefined;
  const program = buildProgram(() => {
    context ??= createContext(configPath);
    return context;
  });
  program.hook('preAction', (thisCommand) => {
    configPath = thisCommand.opts().config as string | undefined;
  });
  try {
    await program.parseAsync(argv as string[]);
    return takeExitStatus();
  } catch (err) {
    return reportError(err);
  }
}

function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return 0;
    // A command group without its subcommand: commander printed the group's help to stderr.
    if (err.code === 'commander.help') return 2;
    process.stderr.write(`fcvm: ${commanderMessage(err)} See '${helpHint.get(err) ?? 'fcvm'} --help'.\n`);
    return 2;
  }
  if (isFcvmError(err)) {
    process.stderr.write(`fcvm: ${err.message}\n`);
    if (err.cause !== undefined) log.debug('cause:', err.cause);
    if (Object.keys(err.context).length > 0) log.debug('context:', err.context);
    return err.exitStatus;
  }
  process.stderr.write(`fcvm: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
  log.debug(err);
  return 1;
}
