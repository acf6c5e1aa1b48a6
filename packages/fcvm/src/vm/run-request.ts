/** What `fcvm podman run` asks the library for, after the CLI has validated every value. */
import type { NetworkMode, PortMapping, VolumeMapping } from '../cli/parse.js';
import type { HypervisorChoice } from '../config.js';

export interface RunRequest {
  readonly name: string;
  readonly image: string;
  /** Container command; empty means the image's default. */
  readonly command: readonly string[];
  readonly vcpus: number | 'unlimited';
  readonly memoryMib: number | 'unlimited';
  readonly hugepages: boolean;
  readonly env: ReadonlyArray<readonly [string, string]>;
  readonly labels: Readonly<Record<string, string>>;
  readonly publish: readonly PortMapping[];
  readonly volumes: readonly VolumeMapping[];
  readonly network: NetworkMode;
  readonly healthCheckUrl: string | null;
  /** How long one answer to the health-check URL may take. */
  readonly healthCheckTimeoutMs: number;
  readonly user: string | null;
  readonly interactive: boolean;
  readonly tty: boolean;
  readonly privileged: boolean;
  readonly hypervisor: HypervisorChoice;
  readonly noSwap: boolean;
  /** Minimum free space on the root disk; null: what the root filesystem image has. */
  readonly rootfsSizeBytes: number | null;
  readonly kernelPath: string | null;
}
