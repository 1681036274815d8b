/**
 * `FakeCard`: an in-process `Card` for unit tests (and for measuring the
 * checkpoint logic without a card). Real ECDSA P-256 signatures with
 * node:crypto, a counter that only goes up, and switches that model what a
 * real card does to the agent: pull it (`remove`/`insert`), make it slow
 * (`delayMs`), fail the next call with a given error, or hand the same card
 * (same state object) to a second agent to model a clone.
 */
import { createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import {
  CardError,
  SIGNATURE_COUNTER_MAX,
  type Card,
  type CardErrorCode,
  type CardIdentity,
  type CardPublicKey,
} from './types.ts';

/** The card's memory; share one object between two FakeCards to model one physical card. */
export interface FakeCardState {
  serial: string;
  manufacturer: string;
  privateKey: KeyObject;
  counter: number;
  inserted: boolean;
}

export function createFakeCardState(options: { serial?: string; manufacturer?: string; counter?: number } = {}): FakeCardState {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    serial: (options.serial ?? '0000FA4E').toUpperCase(),
    manufacturer: (options.manufacturer ?? 'FFFF').toUpperCase(),
    privateKey,
    counter: options.counter ?? 0,
    inserted: true,
  };
}

export class FakeCard implements Card {
  /** Added before every call (ms), to model card latency in batching tests. */
  delayMs = 0;
  /** Signatures made through this object. */
  signatures = 0;
  private failures: CardErrorCode[] = [];

  constructor(readonly state: FakeCardState = createFakeCardState()) {}

  /** Makes the next card call fail with `code`. */
  failNext(code: CardErrorCode): void {
    this.failures.push(code);
  }

  remove(): void {
    this.state.inserted = false;
  }

  insert(): void {
    this.state.inserted = true;
  }

  /** Models `gpg` (or a clone of the agent) using the card: one signature the agent does not know of. */
  signElsewhere(): void {
    this.state.counter += 1;
  }

  async identity(): Promise<CardIdentity> {
    await this.enter();
    const { serial, manufacturer } = this.state;
    return {
      serial,
      manufacturer,
      applicationId: `D276000124010304${manufacturer}${serial}0000`,
      reader: 'fake',
    };
  }

  async publicKey(): Promise<CardPublicKey> {
    await this.enter();
    const spki = createPublicKey(this.state.privateKey).export({ type: 'spki', format: 'der' });
    return { algorithm: 'ecdsa-p256', spkiBase64: Buffer.from(spki).toString('base64') };
  }

  async signatureCounter(): Promise<number> {
    await this.enter();
    return this.state.counter;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    await this.enter();
    if (this.state.counter >= SIGNATURE_COUNTER_MAX) {
      throw new CardError('counter_exhausted', "the card's signature counter reached its maximum");
    }
    const signature = cryptoSign('sha256', message, { key: this.state.privateKey, dsaEncoding: 'ieee-p1363' });
    this.state.counter += 1;
    this.signatures += 1;
    return new Uint8Array(signature);
  }

  async probe(): Promise<void> {
    await this.enter();
  }

  async close(): Promise<void> {}

  private async enter(): Promise<void> {
    if (this.delayMs > 0) await Bun.sleep(this.delayMs);
    const failure = this.failures.shift();
    if (failure) throw new CardError(failure, `injected failure: ${failure}`);
    if (!this.state.inserted) throw new CardError('card_removed', 'the smart card was removed (fake card)');
  }
}
