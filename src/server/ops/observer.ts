/**
 * The hook between the HTTP layer (app.ts) and the operator's metrics: the
 * app reports each finished request and each validate answer, nothing else.
 * Kept in its own file so app.ts depends on this interface only, not on the
 * metrics implementation.
 */
import type { Envelope } from '../../core/envelope.ts';

/** Coarse route of a request; a bounded set so metric labels stay few. */
export type RouteLabel = 'validate' | 'transfer' | 'entity' | 'other';

export interface RequestInfo {
  route: RouteLabel;
  method: string;
  status: number;
  durationMs: number;
}

export interface RequestObserver {
  /** Once per request, when its response is ready. Must be cheap: it runs on the hot path. */
  request(info: RequestInfo): void;
  /** Once per successful validate, with the answer (per-module licensing model and validity). */
  validated(envelope: Envelope): void;
}

/** The path of a request URL, without its query: cheaper than new URL() on every request. */
export function pathOfUrl(url: string): string {
  const pathStart = url.indexOf('/', url.indexOf('://') + 3);
  return pathStart < 0 ? '/' : url.slice(pathStart).split('?', 1)[0]!;
}

const API_PATH = /^\/(?:core\/v2\/)?rest\//;

/** The route label of a request path (the normalised path, without query). */
export function routeOf(path: string): RouteLabel {
  if (API_PATH.test(path)) {
    if (path.endsWith('/validate')) return 'validate';
    if (path.endsWith('/transfer')) return 'transfer';
    return 'entity';
  }
  return 'other';
}
