/**
 * fc-agent, the guest agent. Bundled to one file and run by the guest's Node from the guest init.
 * This first version only announces itself on the console and powers the VM off; the channel,
 * plan and exec server come with the host<->guest protocol.
 */
import { execFileSync } from 'node:child_process';
import { AGENT_STARTED_MARKER, PROTOCOL_VERSION } from '@fcvm/protocol';

function main(): void {
  process.stdout.write(`${AGENT_STARTED_MARKER} protocol=${PROTOCOL_VERSION} node=${process.version}\n`);
  if (process.argv.includes('--no-poweroff')) return;
  execFileSync('/usr/local/bin/busybox', ['poweroff', '-f'], { stdio: 'inherit' });
}

main();
