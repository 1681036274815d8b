/**
 * CORS as the cloud and the original agent offer it (NLIC-638, NLIC-1587):
 * browser clients may call from any origin with Basic credentials and the
 * headers the official JS client sends. Shared by the offline app and the proxy.
 */
import { cors } from 'hono/cors';

export function apiCors() {
  return cors({
    origin: '*',
    allowMethods: ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type', 'Accept', 'X-Requested-With', 'NetLicensing-Origin'],
    maxAge: 600,
  });
}
