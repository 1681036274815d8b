/**
 * The validate use case: read the licensee's assets, let the pure core
 * decide, and persist the core's runtime events before answering.
 *
 * The core decides once, against the latest runtime state, inside the
 * store's serialised `commitRuntime`: two concurrent check-outs for the last
 * seat cannot both see it free. An answer with changes is sent only after
 * they are durable (see "What durable means" in README.md).
 *
 * With a smart card (optional `sealing`), a write is also acknowledged only
 * once a card checkpoint covers it (strict) or is scheduled (relaxed), and
 * no write is made while the card is unavailable: those requests get 503
 * ServiceUnavailableException, reads go on (docs/smart-card.md).
 */
import type { Entity } from '../core/entities.ts';
import { errorEnvelope, type Envelope } from '../core/envelope.ts';
import { validate } from '../core/validate.ts';
import type { ValidateRequest } from '../core/validate-types.ts';
import type { AssetStore } from '../store/asset-store.ts';
import type { DefinitionsReader } from '../store/definitions-cache.ts';

export interface ValidateServiceDeps {
  store: AssetStore;
  /** Cached definitions (see store/definitions-cache.ts); the store itself when absent. */
  definitions?: Pick<DefinitionsReader, 'loadLicenseeAssets'>;
  ttlMs: number;
  /** Card sealing of runtime writes (src/card/session.ts); absent when the database runs without a card. */
  sealing?: WriteSealing;
  /** Reuse modules' earlier decisions (core/validate.ts); default true. */
  reuseModuleResults?: boolean;
}

/** Seals runtime writes; errors thrown or rejected here carry the message the client sees with 503. */
export interface WriteSealing {
  /** Throws when writes cannot be sealed now: the write is then not made. */
  assertWritable(): void;
  /** Resolves once journal entry `journalSeq` is sealed (strict) or its checkpoint scheduled (relaxed). */
  sealed(journalSeq: number): Promise<void>;
}

function sealingUnavailable(error: unknown): ValidateServiceResult {
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'error', status: 503, envelope: errorEnvelope('ServiceUnavailableException', message) };
}

export type ValidateServiceResult =
  | {
      kind: 'ok';
      envelope: Envelope;
      licenseeNumber: string;
      wrote: boolean;
      /** The same request gives the same answer (but for its ttl) until then, if the state stays the same. */
      stableUntilMs: number;
    }
  | { kind: 'error'; status: number; envelope: Envelope };

export function licenseeNotFound(number: string, productNumberGiven: boolean): ValidateServiceResult {
  // The cloud's wording: without productNumber it cannot auto-create; the agent never auto-creates.
  const text = productNumberGiven
    ? `Licensee with the number '${number}' does not exist.`
    : 'Requested licensee does not exist and the productNumber is not provided';
  return { kind: 'error', status: 400, envelope: errorEnvelope('NotFoundException', text) };
}

export async function validateLicensee(
  deps: ValidateServiceDeps,
  licensee: Entity,
  request: ValidateRequest,
  nowMs: number,
): Promise<ValidateServiceResult> {
  const assets = (deps.definitions ?? deps.store).loadLicenseeAssets(licensee);
  if (!assets) {
    return {
      kind: 'error',
      status: 400,
      envelope: errorEnvelope(
        'NotFoundException',
        `Product with the number '${licensee.props['productNumber'] ?? ''}' does not exist.`,
      ),
    };
  }
  const options = { nowMs, ttlMs: deps.ttlMs, reuseModuleResults: deps.reuseModuleResults !== false };
  const sealing = deps.sealing;
  let sealingError: unknown;
  // One decision per request, against the latest runtime state (store/runtime-writer.ts):
  // read-only answers come back at once, changes once durable.
  const outcome = await deps.store.commitRuntime(licensee.number, nowMs, (latest) => {
    const decided = validate(assets, latest, request, options);
    if (decided.events.length > 0 && sealing) {
      try {
        sealing.assertWritable();
      } catch (error) {
        sealingError = error;
        return { events: [], result: decided };
      }
    }
    return { events: decided.events, result: decided };
  });
  if (sealingError !== undefined) return sealingUnavailable(sealingError);
  // Without a sealing error, the decision's events are exactly what was written.
  const wrote = outcome.events.length > 0;
  if (sealing && wrote) {
    // The card seals LMDB's journal head, which the write reaches with a checkpoint. That head
    // may include later writes: waiting for those too is safe.
    try {
      await deps.store.settled();
      await sealing.sealed(deps.store.journalHead().seq);
    } catch (error) {
      return sealingUnavailable(error);
    }
  }
  const envelope = outcome.envelope;
  // An error with nothing validated (e.g. no active module) is a failed request, as in the cloud.
  if (envelope.items.length === 0 && envelope.infos.some((i) => i.type === 'ERROR')) {
    return { kind: 'error', status: 400, envelope };
  }
  return { kind: 'ok', envelope, licenseeNumber: licensee.number, wrote, stableUntilMs: outcome.stableUntilMs };
}
