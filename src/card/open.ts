/**
 * Entry point of the card layer for the CLI and server: opens the real card
 * with a dynamic import, so nothing of PC/SC is loaded (no worker, no
 * libpcsclite) unless a card is really used, and reads what a database
 * records when it is bound to a card.
 */
import type { PcscCardOptions } from './pcsc-card.ts';
import type { Card, CardPublicKey } from './types.ts';

export type OpenCardOptions = PcscCardOptions;

/** Connects to the (bound) OpenPGP card through PC/SC. Throws CardError. */
export async function openCard(options: OpenCardOptions): Promise<Card> {
  const { PcscCard } = await import('./pcsc-card.ts');
  return PcscCard.open(options);
}

/** Connects to the card a database is bound to, found by manufacturer and serial. */
export function openBoundCard(binding: Pick<CardBinding, 'manufacturer' | 'serial'>, options: Omit<OpenCardOptions, 'serial'>): Promise<Card> {
  return openCard({ ...options, serial: `${binding.manufacturer}:${binding.serial}` });
}

/** What the store keeps about the card a database is bound to (meta `cardBinding`). */
export interface CardBinding {
  serial: string;
  manufacturer: string;
  applicationId: string;
  publicKey: CardPublicKey;
  /** ISO time of binding. */
  boundAt: string;
}

export async function readCardBinding(card: Card, nowMs: number): Promise<CardBinding> {
  const identity = await card.identity();
  return {
    serial: identity.serial,
    manufacturer: identity.manufacturer,
    applicationId: identity.applicationId,
    publicKey: await card.publicKey(),
    boundAt: new Date(nowMs).toISOString(),
  };
}
