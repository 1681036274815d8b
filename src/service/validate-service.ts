/**
 * The validate use case: read the licensee's assets, let the pure core
 * decide, and persist the core's runtime events before answering.
 *
 * Reads need no write transaction. Only when the core reports state changes
 * is the decision taken again inside the store's serialised write
 * transaction, against the latest runtime state: two concurrent check-outs
 * for the last seat cannot both see it free. The answer is sent only after
 * that transaction is durable (see "What durable means" in README.md).
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
  | { kind: 'ok'; envelope: Envelope; licenseeNumber: string; wrote: boolean }
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
  const options = { nowMs, ttlMs: deps.ttlMs };
  let outcome = validate(assets, deps.store.getRuntime(licensee.number), request, options);
  let wrote = false;
  if (outcome.events.length > 0) {
    const sealing = deps.sealing;
    if (sealing) {
      try {
        sealing.assertWritable();
      } catch (error) {
        return sealingUnavailable(error);
      }
    }
    let journaled = false;
    outcome = await deps.store.commitRuntime(licensee.number, nowMs, (latest) => {
      const decided = validate(assets, latest, request, options);
      journaled = decided.events.length > 0;
      return { events: decided.events, result: decided };
    });
    wrote = true;
    // The head read after the commit may include later writes: waiting for those too is safe.
    if (sealing && journaled) {
      try {
        await sealing.sealed(deps.store.journalHead().seq);
      } catch (error) {
        return sealingUnavailable(error);
      }
    }
  }
  const envelope = outcome.envelope;
  // An error with nothing validated (e.g. no active module) is a failed request, as in the cloud.
  if (envelope.items.length === 0 && envelope.infos.some((i) => i.type === 'ERROR')) {
    return { kind: 'error', status: 400, envelope };
  }
  return { kind: 'ok', envelope, licenseeNumber: licensee.number, wrote };
}
