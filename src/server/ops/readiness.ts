/**
 * Readiness: a list of named checks, all of which must pass before the
 * agent should get traffic (`GET /ready`). Liveness (`/health`) is separate
 * and only says the process answers.
 *
 * Pluggable: run-agent-offline replaces the `card` check with the card
 * session's (the bound card answers and seals writes) once the card is open.
 * `cardRequirementCheck`, the check before that, fails for a database that
 * needs a card, since nothing could vouch for it yet.
 */
import type { AssetStore } from '../../store/asset-store.ts';

export interface CheckResult {
  ok: boolean;
  /** One line for an operator: what was found, or what is wrong. */
  detail: string;
}

export interface ReadinessCheck {
  name: string;
  run(): CheckResult | Promise<CheckResult>;
}

export interface ReadinessReport {
  ready: boolean;
  checks: ({ name: string } & CheckResult)[];
}

export interface Readiness {
  add(check: ReadinessCheck): void;
  /** Replaces the check with the same name (e.g. the card check once the card layer is up). */
  replace(check: ReadinessCheck): void;
  /** Marks the agent as stopping: not ready from now on, so load balancers drain it. */
  draining(): void;
  report(): Promise<ReadinessReport>;
}

export function createReadiness(checks: ReadinessCheck[] = []): Readiness {
  const list = [...checks];
  let stopping = false;
  return {
    add(check) {
      list.push(check);
    },
    replace(check) {
      const index = list.findIndex((c) => c.name === check.name);
      if (index === -1) list.push(check);
      else list[index] = check;
    },
    draining() {
      stopping = true;
    },
    async report() {
      const results: ReadinessReport['checks'] = [];
      if (stopping) results.push({ name: 'shutdown', ok: false, detail: 'the agent is stopping' });
      for (const check of list) {
        try {
          results.push({ name: check.name, ...(await check.run()) });
        } catch (error) {
          results.push({ name: check.name, ok: false, detail: `check failed: ${(error as Error).message}` });
        }
      }
      return { ready: results.every((r) => r.ok), checks: results };
    },
  };
}

/** The store is open, its meta record and journal head read, and assets were imported. */
export function storeCheck(store: AssetStore): ReadinessCheck {
  return {
    name: 'store',
    run() {
      const meta = store.meta();
      const head = store.journalHead();
      if (!meta.lastImport) return { ok: false, detail: 'no assets imported yet' };
      return { ok: true, detail: `schema ${meta.schemaVersion}, export ${meta.lastImport.exportId}, journal ${head.seq}` };
    },
  };
}

/**
 * run-agent's store: its local copy of what the upstream answered, filled on demand, so an empty
 * one is ready too (nothing imported is normal at its first start). Ready while its meta record
 * and journal head can be read. The upstream is not a readiness check: answering through an
 * outage is what run-agent is for, and a load balancer must not drop it then.
 */
export function localCopyCheck(store: AssetStore): ReadinessCheck {
  return {
    name: 'store',
    run() {
      const meta = store.meta();
      const head = store.journalHead();
      return { ok: true, detail: `local copy, schema ${meta.schemaVersion}, journal ${head.seq}` };
    },
  };
}

/**
 * Placeholder for the card: passes for a database without card, fails for one
 * bound to a card until the card layer replaces it (same name, 'card').
 */
export function cardRequirementCheck(store: AssetStore, options: { cardDisabled: boolean }): ReadinessCheck {
  return {
    name: 'card',
    run() {
      const meta = store.meta();
      if (meta.withoutCard) return { ok: true, detail: 'database runs without a smart card' };
      if (options.cardDisabled) return { ok: true, detail: 'smart card not used (--without-card)' };
      return { ok: false, detail: `database is bound to smart card ${meta.cardSerial ?? '(unknown serial)'}, and no card check is installed` };
    },
  };
}
