// Goal: a vendor password is hashed off the event loop and one at a time, so that guesses sent in
// bulk neither stall validates (synchronous scrypt: 40 guesses held a validate sent before them for
// 1.3 s) nor take more than one core; API keys and headers that passed before are decided at once.
// Method: createAuthenticator with a password check the test holds open (a deferred per call), and
// the app with the real scrypt for the outcome.
import { describe, expect, test } from 'bun:test';
import { entity } from '../support/seed-store.ts';
import { createAuthenticator, type AuthResult } from '../../src/server/auth.ts';
import { hashCredential, type CredentialHash } from '../../src/platform/credentials.ts';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const STORED = hashCredential('vendor', 's3cret');

function heldAuthenticator() {
  const pending: { password: string; release: (ok: boolean) => void }[] = [];
  const authenticator = createAuthenticator(
    {
      token: (number) => (number === 'key-1' ? entity('Token', 'key-1', { tokenType: 'APIKEY' }) : undefined),
      vendorCredentials: (): CredentialHash => STORED,
    },
    {
      allowAnonymous: false,
      verify: (_stored, _user, password) => new Promise<boolean>((resolve) => pending.push({ password, release: resolve })),
    },
  );
  return { authenticator, pending };
}

describe('vendor passwords', () => {
  test('are checked one at a time, off the event loop, while API keys are decided at once', async () => {
    const { authenticator, pending } = heldAuthenticator();
    const first = authenticator.authenticate(basic('vendor', 'guess-1'));
    const second = authenticator.authenticate(basic('vendor', 's3cret'));
    expect(first).toBeInstanceOf(Promise);
    expect(second).toBeInstanceOf(Promise);
    await Bun.sleep(0);
    // The second waits for the first: one hash at a time.
    expect(pending.map((p) => p.password)).toEqual(['guess-1']);
    // Meanwhile an API key (and a wrong user name, which needs no hash) is answered at once.
    expect(authenticator.authenticate(basic('apiKey', 'key-1'))).toMatchObject({ ok: true, principal: { kind: 'apiKey' } });
    expect(authenticator.authenticate(basic('someone', 's3cret'))).toMatchObject({ ok: false, status: 401 });
    pending[0]!.release(false);
    expect(await first).toMatchObject({ ok: false, status: 401, message: 'Bad credentials' });
    await Bun.sleep(0);
    expect(pending.map((p) => p.password)).toEqual(['guess-1', 's3cret']);
    pending[1]!.release(true);
    expect(await second).toEqual({ ok: true, principal: { kind: 'vendor', user: 'vendor' } });
    // A header that passed is known without another hash.
    expect(authenticator.authenticate(basic('vendor', 's3cret'))).toEqual({ ok: true, principal: { kind: 'vendor', user: 'vendor' } });
    expect(pending).toHaveLength(2);
  });

  test('a check that fails to run is an error, not a refusal (nothing remembered), and the next one still runs', async () => {
    let fail = true;
    const flaky = createAuthenticator(
      { token: () => undefined, vendorCredentials: () => STORED },
      { allowAnonymous: false, verify: async () => (fail ? Promise.reject(new Error('scrypt failed')) : true) },
    );
    await expect(flaky.authenticate(basic('vendor', 's3cret'))).rejects.toThrow('scrypt failed');
    fail = false;
    expect(((await flaky.authenticate(basic('vendor', 's3cret'))) as AuthResult).ok).toBe(true);
  });

  test('with the real scrypt: the right password passes, a wrong one does not', async () => {
    const authenticator = createAuthenticator({ token: () => undefined, vendorCredentials: () => STORED }, { allowAnonymous: false });
    expect(await authenticator.authenticate(basic('vendor', 's3cret'))).toMatchObject({ ok: true });
    expect(await authenticator.authenticate(basic('vendor', 's3cre'))).toMatchObject({ ok: false, status: 401 });
  });
});
