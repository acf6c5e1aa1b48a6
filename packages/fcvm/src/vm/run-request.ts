/** What `fcvm podman run` asks the library for, after the CLI has validated every value. */
import type { HypervisorChoice } from '../config.js';

export const MAX_VCPUS = 32;
export const MIN_MEM_MIB = 128;
export const MAX_MEM_MIB = 1024 * 1024;

export interface PortMapping {
  readonly hostIp: string | null;
  readonly hostPort: number;
  readonly guestPort: number;
  readonly protocol: 'tcp' | 'udp';
}

export interface VolumeMapping {
  readonly hostPath: string;
  readonly guestPath: string;
  readonly readOnly: boolean;
}

export const NETWORK_MODES = ['rootless', 'bridged', 'routed'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

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
