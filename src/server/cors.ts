/**
 * CORS as the cloud and the original agent offer it (NLIC-638, NLIC-1587):
 * browser clients may call from any origin with Basic credentials and the
 * headers the official JS client sends. Shared by the offline app and the proxy.
 */
import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';

/**
 * Only requests with an Origin header (browsers) get CORS headers: for every
 * other client they mean nothing, and skipping the middleware is a measurable
 * share of a validate answered from the answer cache.
 */
export function apiCors(): MiddlewareHandler {
  const handler = cors({
    origin: '*',
    allowMethods: ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type', 'Accept', 'X-Requested-With', 'NetLicensing-Origin'],
    maxAge: 600,
  });
  return (c, next) => (c.req.header('origin') === undefined ? next() : handler(c, next));
}
