/**
 * `PcscCard`: the agent's `Card` on a real OpenPGP card (YubiKey, Nitrokey,
 * Gnuk, …) reached through PC/SC.
 *
 * The card is held with an EXCLUSIVE PC/SC connection for as long as the
 * agent uses it: no other program can send it a command in between, so the
 * signature counter read at connect time plus one per signature made here is
 * the card's exact counter, and one checkpoint costs one APDU (PSO:CDS; two
 * when the card forces a PIN entry per signature).
 *
 * A pulled card surfaces as `card_removed` (or `no_card`); the connection is
 * dropped and the next call connects again from scratch: find the card
 * among all readers, SELECT, check the serial is the bound one (`wrong_card`
 * otherwise, naming both), re-read the counter, verify the PIN again.
 * A wrong PIN is never retried (the card would block it after 3 tries).
 * When pcscd itself went away (`no_service`: stopped, restarted), the
 * PC/SC context is established anew on the next call.
 */
import { createHash } from 'node:crypto';
import { findTlv, SW, swHex } from './apdu.ts';
import {
  OpenPgpSession,
  parseAid,
  parseAlgorithmAttributes,
  parsePwStatus,
  parseSignatureCounter,
  publicKeyFromTemplate,
  signatureInput,
  type PwStatus,
} from './openpgp.ts';
import { openPcsc, RV, type Pcsc, type PcscConnection } from './pcsc.ts';
import {
  CardError,
  serialMatches,
  SIGNATURE_COUNTER_MAX,
  type Card,
  type CardAlgorithm,
  type CardIdentity,
  type CardPublicKey,
} from './types.ts';

export interface PcscCardOptions {
  /** Serial (or manufacturer+serial, or AID) of the bound card; undefined: the only OpenPGP card present. */
  serial?: string;
  /** User PIN (PW1) for signing. */
  pin: string;
  /** Only readers whose name contains this text. */
  readerFilter?: string;
  /** Per-PC/SC-call timeout (ms). */
  callTimeoutMs?: number;
  /** pcscd socket (see OpenPcscOptions.socketPath). */
  socketPath?: string;
  /** Shared PC/SC client; by default the card opens (and closes) its own. */
  pcsc?: Pcsc;
}

interface Connected {
  connection: PcscConnection;
  session: OpenPgpSession;
  identity: CardIdentity;
  algorithm: CardAlgorithm;
  pwStatus: PwStatus;
  counter: number;
  pinVerified: boolean;
}

export class PcscCard implements Card {
  private current: Connected | undefined;
  private publicKeyCache: CardPublicKey | undefined;
  /** Serialises card operations: one APDU exchange at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  /** pcscd went away: the context is dead and is established anew before the next call. */
  private contextLost = false;

  private constructor(
    private pcsc: Pcsc,
    private readonly ownsPcsc: boolean,
    private readonly options: PcscCardOptions,
  ) {}

  /** Connects to the card (throws CardError if it is missing, wrong, blocked…). */
  static async open(options: PcscCardOptions): Promise<PcscCard> {
    const pcsc =
      options.pcsc ??
      (await openPcsc({
        ...(options.callTimeoutMs === undefined ? {} : { callTimeoutMs: options.callTimeoutMs }),
        ...(options.socketPath === undefined ? {} : { socketPath: options.socketPath }),
      }));
    const card = new PcscCard(pcsc, options.pcsc === undefined, options);
    try {
      await card.run(async () => undefined);
    } catch (error) {
      await card.close();
      throw error;
    }
    return card;
  }

  identity(): Promise<CardIdentity> {
    return this.run(async (c) => c.identity);
  }

  publicKey(): Promise<CardPublicKey> {
    return this.run(async (c) => {
      if (!this.publicKeyCache) {
        this.publicKeyCache = publicKeyFromTemplate(await c.session.readSignaturePublicKey(), c.algorithm);
      }
      return this.publicKeyCache;
    });
  }

  signatureCounter(): Promise<number> {
    return this.run(async (c) => c.counter);
  }

  /** Reads the counter from the card itself (one APDU), bypassing the connection's tally. */
  readSignatureCounter(): Promise<number> {
    return this.run(async (c) => {
      c.counter = parseSignatureCounter(await c.session.getData(0x007a));
      return c.counter;
    });
  }

  /** Presence check for readiness: one GET DATA 7A (the counter read refreshes the tally, which cannot differ while held exclusively). */
  async probe(): Promise<void> {
    await this.readSignatureCounter();
  }

  sign(message: Uint8Array): Promise<Uint8Array> {
    return this.run(async (c) => {
      if (c.counter >= SIGNATURE_COUNTER_MAX) {
        throw new CardError(
          'counter_exhausted',
          `the card's signature counter reached its maximum (${SIGNATURE_COUNTER_MAX}); it cannot seal checkpoints any more: bind a new card (fresh export and import)`,
        );
      }
      const input = signatureInput(c.algorithm, createHash('sha256').update(message).digest());
      if (!c.pinVerified) await this.verifyPin(c);
      let result = await c.session.computeSignature(input);
      if (result.sw === SW.SECURITY_NOT_SATISFIED) {
        // The card forgot the PIN (reset by another program, or "PIN forced" cards): verify once more.
        await this.verifyPin(c);
        result = await c.session.computeSignature(input);
      }
      if (!result.signature) {
        if (result.sw === SW.AUTH_METHOD_BLOCKED) throw new CardError('pin_blocked', "the card's user PIN is blocked");
        throw new CardError('card_failure', `the card refused to sign (status ${swHex(result.sw)})`);
      }
      c.counter += 1;
      c.pinVerified = c.pwStatus.pw1ValidForSeveralSignatures;
      return result.signature;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
    await this.drop('leave');
    if (this.ownsPcsc) await this.pcsc.close();
  }

  private async verifyPin(c: Connected): Promise<void> {
    if (c.pwStatus.pw1Retries === 0) {
      throw new CardError('pin_blocked', "the card's user PIN is blocked (retry counter 0): unblock it with the admin PIN or reset code (gpg --card-edit, admin, passwd)");
    }
    try {
      await c.session.verify(0x81, this.options.pin);
    } catch (error) {
      if (error instanceof CardError && error.code === 'wrong_pin') {
        // Keep the tally in step with the card so a second attempt is not made blindly.
        const left = error.details['retriesLeft'];
        c.pwStatus = { ...c.pwStatus, pw1Retries: typeof left === 'number' ? left : 0 };
      }
      throw error;
    }
    c.pinVerified = true;
  }

  /**
   * Runs `action` with a live connection, one at a time. A removed card
   * drops the connection. When pcscd says the handle went stale between
   * operations (card pulled and put back, or reset), nothing reached the
   * card, so the action is run once more on a fresh connection: that
   * connection checks the serial again.
   */
  private run<T>(action: (c: Connected) => Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      if (this.closed) throw new CardError('card_failure', 'the card connection is closed');
      if (this.contextLost) await this.renewContext();
      try {
        const c = this.current ?? (await this.connect());
        return await action(c);
      } catch (error) {
        if (error instanceof CardError && ['card_removed', 'timeout', 'card_failure', 'no_card', 'no_service'].includes(error.code)) {
          await this.drop('leave');
        }
        if (error instanceof CardError && error.code === 'no_service' && this.ownsPcsc) this.contextLost = true;
        throw error;
      }
    };
    const next = this.queue.then(async () => {
      try {
        return await attempt();
      } catch (error) {
        const rv = error instanceof CardError ? error.details['rv'] : undefined;
        if (rv === RV.REMOVED_CARD || rv === RV.RESET_CARD) return attempt();
        throw error;
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** A new PC/SC client (worker and context) after pcscd went away; throws no_service while it is still down. */
  private async renewContext(): Promise<void> {
    await this.pcsc.close().catch(() => undefined);
    this.pcsc = await openPcsc({
      ...(this.options.callTimeoutMs === undefined ? {} : { callTimeoutMs: this.options.callTimeoutMs }),
      ...(this.options.socketPath === undefined ? {} : { socketPath: this.options.socketPath }),
    });
    this.contextLost = false;
  }

  private async drop(disposition: 'leave' | 'reset'): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (c) await c.connection.disconnect(disposition).catch(() => undefined);
  }

  /** Finds the card among the readers and sets up the OpenPGP session. */
  private async connect(): Promise<Connected> {
    const readers = (await this.pcsc.listReaders()).filter(
      (r) => this.options.readerFilter === undefined || r.includes(this.options.readerFilter),
    );
    if (readers.length === 0) {
      throw new CardError(
        'no_reader',
        this.options.readerFilter === undefined
          ? 'no smart card reader is connected: plug in the reader or token'
          : `no smart card reader whose name contains "${this.options.readerFilter}"`,
      );
    }
    const present = (await this.pcsc.readerStatus(readers)).filter((s) => s.present);
    const wanted = this.options.serial;
    if (present.length === 0) {
      throw new CardError('no_card', `no smart card is inserted${wanted ? ` (expected card ${wanted})` : ''} (readers: ${readers.join(', ')})`);
    }
    const others: string[] = [];
    const problems: CardError[] = [];
    const found: Connected[] = [];
    for (const { reader } of present) {
      let connection: PcscConnection;
      try {
        connection = await this.pcsc.connect(reader, 'exclusive');
      } catch (error) {
        if (error instanceof CardError) {
          problems.push(error);
          continue;
        }
        throw error;
      }
      try {
        const c = await this.setUp(connection, reader);
        if (wanted !== undefined && !serialMatches(wanted, c.identity)) {
          others.push(`${c.identity.manufacturer}:${c.identity.serial} in "${reader}"`);
          await connection.disconnect('leave');
          continue;
        }
        found.push(c);
        if (wanted !== undefined) break;
      } catch (error) {
        await connection.disconnect('leave').catch(() => undefined);
        if (error instanceof CardError) {
          problems.push(error);
          continue;
        }
        throw error;
      }
    }
    if (found.length > 1) {
      for (const c of found) await c.connection.disconnect('leave');
      throw new CardError(
        'ambiguous_card',
        `more than one OpenPGP card is inserted (${found.map((c) => c.identity.serial).join(', ')}): remove the others or name one with its serial`,
      );
    }
    const chosen = found[0];
    if (chosen) {
      this.current = chosen;
      return chosen;
    }
    if (others.length > 0) {
      throw new CardError(
        'wrong_card',
        `wrong smart card: expected card ${wanted}, but the inserted card is ${others.join(', ')}; insert card ${wanted}`,
        { details: { expected: wanted, found: others } },
      );
    }
    const blocking = problems.find((p) => p.code === 'pin_blocked') ?? problems.find((p) => p.code === 'card_in_use') ?? problems[0];
    if (blocking) throw blocking;
    throw new CardError('no_card', 'no usable smart card found');
  }

  private async setUp(connection: PcscConnection, reader: string): Promise<Connected> {
    const session = new OpenPgpSession((apdu) => connection.transmit(apdu));
    await session.select();
    const appData = await session.getData(0x006e);
    const aid = findTlv(appData, 0x4f) ?? (await session.getData(0x004f));
    const parsed = parseAid(aid);
    const identity: CardIdentity = {
      serial: parsed.serial,
      manufacturer: parsed.manufacturer,
      applicationId: parsed.applicationId,
      reader,
    };
    const algorithmAttributes = findTlv(appData, 0xc1);
    const pwBytes = findTlv(appData, 0xc4) ?? (await session.getData(0x00c4));
    if (!algorithmAttributes) throw new CardError('no_signing_key', 'the card does not describe its signature key (no DO C1)');
    const pwStatus = parsePwStatus(pwBytes);
    if (pwStatus.pw1Retries === 0) {
      throw new CardError(
        'pin_blocked',
        `the user PIN of card ${identity.serial} is blocked (retry counter 0): unblock it with the admin PIN or reset code (gpg --card-edit, admin, passwd)`,
      );
    }
    const counter = parseSignatureCounter(await session.getData(0x007a));
    return {
      connection,
      session,
      identity,
      algorithm: parseAlgorithmAttributes(algorithmAttributes),
      pwStatus,
      counter,
      pinVerified: false,
    };
  }
}
