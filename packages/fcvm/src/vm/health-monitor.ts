/**
 * Keeps a VM's registry record's health current once its container runs: asks the agent (which
 * runs the image's HEALTHCHECK, if it has one) every 2 s until the first healthy answer, then every
 * 10 s, as the reference does. Without a HEALTHCHECK, a running container is healthy.
 */
import type { AgentClient } from '../agent/agent-client.js';
import { log } from '../log.js';
import type { HealthStatus } from '../state/record.js';
import type { Registry } from '../state/registry.js';

const UNTIL_HEALTHY_MS = 2_000;
const WHILE_HEALTHY_MS = 10_000;

export function monitorHealth(agent: AgentClient, registry: Registry, vmId: string, signal: AbortSignal): void {
  let last: HealthStatus | undefined;
  const check = async (): Promise<void> => {
    if (signal.aborted) return;
    let health: HealthStatus;
    try {
      const status = await agent.status();
      if (status.phase !== 'running') return; // the container ended: the run path records that
      health = status.health === 'healthy' ? 'healthy' : status.health === 'unhealthy' ? 'unhealthy' : 'unknown';
    } catch (err) {
      if (signal.aborted) return;
      log.debug(`health check of ${vmId}: ${(err as Error).message}`);
      health = 'unreachable';
    }
    if (health !== last && !signal.aborted) {
      last = health;
      await registry.update(vmId, (record) => ({ ...record, health_status: health }));
    }
    if (!signal.aborted) {
      setTimeout(run, health === 'healthy' ? WHILE_HEALTHY_MS : UNTIL_HEALTHY_MS).unref();
    }
  };
  const run = (): void => {
    check().catch((err: unknown) => log.warn(`could not record the health of ${vmId}: ${(err as Error).message}`));
  };
  run();
}
