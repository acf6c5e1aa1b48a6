/**
 * `--health-check URL` names the guest's service (`http://localhost:80/health`: the port is a guest
 * port, as in the reference). fcvm polls it the way a user would reach it: through the published
 * TCP port for that guest port, at its host address.
 */
import { FcvmError } from '../errors.js';
import type { VmNetwork } from './types.js';

export function publishedHealthUrl(url: string, network: VmNetwork | null): string {
  const parsed = new URL(url);
  const guestPort = parsed.port === '' ? 80 : Number(parsed.port);
  const port = network?.ports.find((p) => p.protocol === 'tcp' && p.guestPort === guestPort);
  if (port === undefined) {
    throw new FcvmError(
      'USAGE',
      `--health-check ${url} checks guest port ${guestPort}, which is not published; add --publish HOSTPORT:${guestPort}.`,
    );
  }
  parsed.hostname = port.hostIp.includes(':') ? `[${port.hostIp}]` : port.hostIp;
  parsed.port = String(port.hostPort);
  return parsed.toString();
}
