/**
 * Optional user configuration, TOML. Looked up in this order: `--config PATH`, `FCVM_CONFIG`,
 * `$XDG_CONFIG_HOME/fcvm/config.toml` (else `~/.config/fcvm/config.toml`), `/etc/fcvm/config.toml`.
 * Unknown keys are rejected so a typo never silently does nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { FcvmError } from './errors.js';

export const HYPERVISOR_CHOICES = ['auto', 'firecracker', 'qemu'] as const;
export type HypervisorChoice = (typeof HYPERVISOR_CHOICES)[number];

const ConfigSchema = z
  .object({
    /** Where assets, VMs, snapshots and state live. FCVM_DATA_DIR still wins. */
    data_dir: z.string().min(1).optional(),
    default_hypervisor: z.enum(HYPERVISOR_CHOICES).default('auto'),
    kernel: z
      .object({
        /** Use this kernel image instead of building from the distribution's package. */
        path: z.string().min(1).optional(),
        /** Debian package that provides the guest kernel. */
        package: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    rootfs: z
      .object({
        /** Debian mirror for mmdebstrap; default is mmdebstrap's own default (or the host's apt sources). */
        mirror: z.string().min(1).optional(),
        suite: z.string().min(1).default('bookworm'),
        /** Added to the guest package list (changes the rootfs hash). */
        extra_packages: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .default({ suite: 'bookworm', extra_packages: [] }),
    firecracker: z
      .object({ binary: z.string().min(1).optional() })
      .strict()
      .default({}),
    qemu: z
      .object({ binary: z.string().min(1).optional() })
      .strict()
      .default({}),
    network: z
      .object({
        /** The guest's DNS servers; default the host's non-loopback resolvers. FCVM_DNS wins. */
        dns: z.array(z.string().min(1)).optional(),
        /** The guest's NTP servers; default the host's chrony sources. FCVM_NTP wins. */
        ntp: z.array(z.string().min(1)).optional(),
      })
      .strict()
      .default({}),
  })
  .strict();

export type FcvmConfig = z.infer<typeof ConfigSchema>;

export function configSearchPath(env: NodeJS.ProcessEnv = process.env): string[] {
  const paths: string[] = [];
  if (env.FCVM_CONFIG) paths.push(env.FCVM_CONFIG);
  const xdg = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  paths.push(join(xdg, 'fcvm', 'config.toml'), '/etc/fcvm/config.toml');
  return paths;
}

export function parseConfig(text: string, source: string): FcvmConfig {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new FcvmError('CONFIG', `Config file ${source} is not valid TOML: ${(err as Error).message.split('\n')[0]}`, {
      cause: err,
    });
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : '(top level)';
    throw new FcvmError('CONFIG', `Config file ${source}: ${where}: ${issue?.message ?? 'invalid'}.`);
  }
  return result.data;
}

/** Loads the first config file that exists; an explicit path that does not exist is an error. */
export function loadConfig(explicitPath?: string, env: NodeJS.ProcessEnv = process.env): FcvmConfig {
  if (explicitPath !== undefined) {
    if (!existsSync(explicitPath)) throw new FcvmError('CONFIG', `Config file ${explicitPath} does not exist.`);
    return parseConfig(readFileSync(explicitPath, 'utf8'), explicitPath);
  }
  for (const candidate of configSearchPath(env)) {
    if (existsSync(candidate)) return parseConfig(readFileSync(candidate, 'utf8'), candidate);
  }
  return ConfigSchema.parse({});
}
