/**
 * What run-agent's admin listener shows beyond the database (its local copy):
 * the upstream and its circuit breaker, where answers came from, and the
 * replay of changes made during outages — as Prometheus metrics, status page
 * tiles and warnings, and the `proxy` key of /status.json. The figures are
 * the proxy's own counters (src/proxy/stats.ts), read at each request.
 */
import type { ProxyStats } from '../../proxy/stats.ts';
import type { AdminExtension } from './admin-app.ts';
import { counter, gauge, type MetricFamily } from './prometheus.ts';

const BREAKER_STATES = ['closed', 'open', 'half-open'] as const;

type CountKey = { [K in keyof ProxyStats]: ProxyStats[K] extends number ? K : never }[keyof ProxyStats];

/** Counters with one sample each: metric name, help, and the ProxyStats field it shows. */
const PLAIN_COUNTERS: ReadonlyArray<readonly [string, string, CountKey]> = [
  ['nla_proxy_forwarded_total', 'Upstream answers passed through to clients (any status below 500).', 'forwarded'],
  ['nla_proxy_breaker_opened_total', 'Times the circuit breaker opened.', 'breakerOpened'],
  ['nla_proxy_breaker_rejected_total', 'Requests not sent upstream because the breaker was open.', 'breakerRejected'],
  ['nla_proxy_local_answers_total', 'Validate and read calls answered from the local copy instead of the upstream.', 'localAnswers'],
  ['nla_proxy_cache_answers_total', 'Validate calls answered from the validation cache (licensee not in the local copy).', 'cacheAnswers'],
  ['nla_proxy_backlog_answers_total', 'Local answers given because the licensee still had changes waiting for replay.', 'backlogAnswers'],
  ['nla_proxy_unavailable_answers_total', 'Requests answered 503: upstream unreachable and nothing local to answer with.', 'unavailableAnswers'],
  ['nla_proxy_refreshes_total', 'Local copies of licensees refreshed from the upstream.', 'refreshes'],
  ['nla_proxy_refresh_failures_total', 'Refreshes of the local copy that failed.', 'refreshFailures'],
  ['nla_proxy_replayed_total', 'Changes replayed upstream.', 'replayed'],
  ['nla_proxy_replay_conflicts_total', 'Replayed changes the upstream answered differently from the local answer (logged and stored).', 'replayConflicts'],
  ['nla_proxy_replay_stalls_total', 'Replay attempts stopped by a failure or refusal (retried later).', 'replayStalls'],
];

const BREAKER_TEXT: Record<ProxyStats['breakerState'], string> = {
  closed: 'answering',
  open: 'not answering',
  'half-open': 'being tried again',
};

export function proxyExtension(stats: ProxyStats, upstreamUrl: string): AdminExtension {
  const one = (value: number) => [{ value }];
  /** `prefix` and when the upstream went down, or nothing while it answers. */
  const downSince = (prefix: string) => (stats.upstreamDownSinceMs === undefined ? '' : `${prefix}${new Date(stats.upstreamDownSinceMs).toISOString()}`);
  return {
    name: 'proxy',
    metrics(): MetricFamily[] {
      return [
        gauge('nla_proxy_upstream_info', 'The upstream run-agent forwards to (the cloud or another agent).', [{ labels: { upstream: upstreamUrl }, value: 1 }]),
        gauge(
          'nla_proxy_breaker_state',
          "The upstream circuit breaker: 1 for its current state (closed: forwarding; open: answering locally without trying; half-open: one request tries the upstream).",
          BREAKER_STATES.map((state) => ({ labels: { state }, value: stats.breakerState === state ? 1 : 0 })),
        ),
        gauge(
          'nla_proxy_upstream_down_since_timestamp_seconds',
          'When the breaker opened, seconds since epoch; no sample while it is closed.',
          stats.upstreamDownSinceMs === undefined ? [] : one(stats.upstreamDownSinceMs / 1000),
        ),
        counter('nla_proxy_upstream_failures_total', 'Upstream calls that failed, by cause.', [
          { labels: { cause: 'timeout' }, value: stats.upstreamTimeouts },
          { labels: { cause: 'network' }, value: stats.upstreamNetworkErrors },
          { labels: { cause: 'server_error' }, value: stats.upstreamServerErrors },
        ]),
        gauge('nla_proxy_replay_pending', 'Changes answered locally that wait to be replayed upstream.', one(stats.replayPending)),
        ...PLAIN_COUNTERS.map(([name, help, key]) => counter(name, help, one(stats[key]))),
      ];
    },
    tiles() {
      const failures = stats.upstreamTimeouts + stats.upstreamNetworkErrors + stats.upstreamServerErrors;
      return [
        { title: 'Upstream', value: BREAKER_TEXT[stats.breakerState], detail: `${upstreamUrl} (breaker ${stats.breakerState}${downSince(', since ')})` },
        {
          title: 'Answers',
          value: `${stats.forwarded} forwarded · ${stats.localAnswers + stats.cacheAnswers} local`,
          detail: `${stats.unavailableAnswers} unavailable (503) · ${failures} upstream failure(s)`,
        },
        { title: 'Replay', value: `${stats.replayPending} waiting`, detail: `${stats.replayed} replayed · ${stats.replayConflicts} conflict(s)` },
      ];
    },
    warnings() {
      const warnings: string[] = [];
      if (stats.breakerState !== 'closed') {
        warnings.push(`The upstream ${upstreamUrl} is not answering${downSince(' since ')}: answers come from the local copy, and changes wait for replay.`);
      }
      if (stats.replayConflicts > 0) {
        warnings.push(`${stats.replayConflicts} replayed change(s) were answered differently by the upstream: the log and the stored conflict records say which.`);
      }
      return warnings;
    },
    json: () => ({ upstream: upstreamUrl, ...stats }),
  };
}
