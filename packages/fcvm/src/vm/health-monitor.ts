/**
 * Keeps a VM's registry record's health current once its container runs: asks the agent (which
 * runs the image's HEALTHCHECK, if it has one) every 2 s until the first healthy answer, then every
 * 10 s, as the reference does. Without a HEALTHCHECK, a running container is healthy. With
 * `--health-check URL` the URL decides instead: healthy on a 2xx answer within the timeout.
 */
import type { AgentClient } from '../agent/agent-client.js';
import { log } from '../log.js';
import type { HealthStatus } from '../state/record.js';
import type { Registry } from '../state/registry.js';

const UNTIL_HEALTHY_MS = 2_000;
const WHILE_HEALTHY_MS = 10_000;

/** `--health-check`: the URL as the host reaches it, and how long one answer may take. */
export interface HttpHealthCheck {
  readonly url: string;
  readonly timeoutMs: number;
}

/** One poll of the URL: 2xx healthy, another status unhealthy, no answer in time `timeout`. */
export async function probeHttpHealth(check: HttpHealthCheck): Promise<HealthStatus> {
  try {
    const response = await fetch(check.url, { signal: AbortSignal.timeout(check.timeoutMs), redirect: 'manual' });
    await response.body?.cancel();
    return response.status >= 200 && response.status < 300 ? 'healthy' : 'unhealthy';
  } catch (err) {
    return (err as Error).name === 'TimeoutError' ? 'timeout' : 'unhealthy';
  }
}

async function agentHealth(agent: AgentClient, vmId: string): Promise<HealthStatus | null> {
  try {
    const status = await agent.status();
    if (status.phase !== 'running') return null;
    return status.health === 'healthy' ? 'healthy' : status.health === 'unhealthy' ? 'unhealthy' : 'unknown';
  } catch (err) {
    log.debug(`health check of ${vmId}: ${(err as Error).message}`);
    return 'unreachable';
  }
}

export function monitorHealth(
  agent: AgentClient,
  registry: Registry,
  vmId: string,
  signal: AbortSignal,
  http: HttpHealthCheck | null = null,
): void {
  let last: HealthStatus | undefined;
  const check = async (): Promise<void> => {
    if (signal.aborted) return;
    const health = http !== null ? await probeHttpHealth(http) : await agentHealth(agent, vmId);
    if (health === null || signal.aborted) return; // the container ended: the run path records that
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
