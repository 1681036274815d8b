/**
 * Credentials the upstream accepted, remembered so that answers given from
 * local state during an outage authenticate the same callers the upstream
 * would: vendor users (any licensee) and API keys (only the licensees the
 * upstream let them validate — a key's scope and role are the upstream's
 * business, the agent only repeats what it saw).
 *
 * Stored in the validation cache as a salted scrypt hash (never the
 * password or key itself; src/platform/credentials.ts), under an id that is
 * a SHA-256 of the user name (vendors) or of the key (API keys are random,
 * so the id reveals nothing useful). scrypt is slow on purpose: checked
 * headers are remembered in memory, like the offline authenticator does.
 * An upstream 401 for a header forgets it at once.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../platform/clock.ts';
import { hashCredential, verifyCredential } from '../platform/credentials.ts';
import { CREDENTIAL_TTL_MS, type CredentialRecord, type ProxyCache } from './cache.ts';

const MEMORY_MAX = 1024;
/** API-key records keep at most this many licensees (most recent last). */
const LICENSEES_MAX = 256;

interface Remembered {
  record: CredentialRecord;
  /** When this process last wrote the record to the cache (0: never). */
  storedAtMs: number;
}

export function decodeBasic(header: string): { user: string; password: string } | undefined {
  const match = /^\s*Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function recordId(user: string, password: string): string {
  return user === 'apiKey' ? `apikey:${sha256(password)}` : `user:${sha256(user)}`;
}

export class UpstreamCredentials {
  private readonly memory = new Map<string, Remembered>();
  /** Work in flight per header: concurrent requests with one header share one scrypt, not one each. */
  private readonly storing = new Map<string, Promise<void>>();
  private readonly loading = new Map<string, Promise<CredentialRecord | undefined>>();

  constructor(
    private readonly cache: ProxyCache,
    private readonly clock: Clock,
  ) {}

  private memorise(header: string, remembered: Remembered): void {
    if (this.memory.size >= MEMORY_MAX) this.memory.clear();
    this.memory.set(header, remembered);
  }

  /** True when remember(header, licenseeNumber) has nothing to do (cheap; the hot path asks first). */
  isRemembered(header: string, licenseeNumber: string): boolean {
    const known = this.memory.get(header);
    const fresh = known !== undefined && this.clock.nowMs() - known.storedAtMs < CREDENTIAL_TTL_MS / 2;
    return fresh && (known.record.user !== 'apiKey' || (known.record.licensees?.includes(licenseeNumber) ?? false));
  }

  /** The upstream answered 200 to `header` for `licenseeNumber`. */
  async remember(header: string, licenseeNumber: string): Promise<void> {
    const covered = () => this.isRemembered(header, licenseeNumber);
    if (covered()) return;
    // One run per header at a time (each one may cost a scrypt, and API-key runs extend one licensee list).
    for (let inFlight = this.storing.get(header); inFlight; inFlight = this.storing.get(header)) {
      await inFlight;
      if (covered()) return;
    }
    const run = this.store(header, licenseeNumber).finally(() => this.storing.delete(header));
    this.storing.set(header, run);
    await run;
  }

  private async store(header: string, licenseeNumber: string): Promise<void> {
    const known = this.memory.get(header);
    const credentials = decodeBasic(header);
    if (!credentials) return;
    const isApiKey = credentials.user === 'apiKey';

    const id = recordId(credentials.user, credentials.password);
    let record = known?.record;
    if (record === undefined) {
      const stored = await this.cache.getCredential(id);
      // A stored record for another password (changed upstream) is replaced.
      if (stored && (await verifyCredential(stored, credentials.user, credentials.password))) record = stored;
    }
    record ??= hashCredential(credentials.user, credentials.password);
    if (isApiKey) {
      const licensees = (record.licensees ?? []).filter((n) => n !== licenseeNumber);
      licensees.push(licenseeNumber);
      record = { ...record, licensees: licensees.slice(-LICENSEES_MAX) };
    }
    await this.cache.putCredential(id, record, CREDENTIAL_TTL_MS);
    this.memorise(header, { record, storedAtMs: this.clock.nowMs() });
  }

  /** The upstream answered 401 to `header`: it must not authenticate local answers any more. */
  async forget(header: string): Promise<void> {
    this.memory.delete(header);
    const credentials = decodeBasic(header);
    if (!credentials) return;
    const id = recordId(credentials.user, credentials.password);
    const stored = await this.cache.getCredential(id);
    if (stored && (await verifyCredential(stored, credentials.user, credentials.password))) {
      await this.cache.putCredential(id, undefined, 0);
    }
  }

  /**
   * May `header` be answered locally? For validate pass the licensee; for
   * read calls pass undefined (only vendor credentials qualify).
   */
  async accepts(header: string, licenseeNumber: string | undefined): Promise<boolean> {
    const credentials = decodeBasic(header);
    if (!credentials) return false;
    let record = this.memory.get(header)?.record;
    if (record === undefined) {
      let load = this.loading.get(header);
      if (!load) {
        load = this.load(header, credentials.user, credentials.password).finally(() => this.loading.delete(header));
        this.loading.set(header, load);
      }
      record = await load;
      if (record === undefined) return false;
    }
    if (credentials.user !== 'apiKey') return true;
    return licenseeNumber !== undefined && (record.licensees?.includes(licenseeNumber) ?? false);
  }

  private async load(header: string, user: string, password: string): Promise<CredentialRecord | undefined> {
    const stored = await this.cache.getCredential(recordId(user, password));
    if (!stored || !(await verifyCredential(stored, user, password))) return undefined;
    this.memorise(header, { record: stored, storedAtMs: 0 });
    return stored;
  }
}
