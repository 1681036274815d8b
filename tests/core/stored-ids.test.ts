/**
 * Goal: what the agent stores per client — a Floating session id, a Node-Locked secret — is at
 * most 1,024 characters: longer ones are refused as a malformed request (nothing stored), so
 * that a client cannot fill the runtime state, the journal and the status page with 64 KiB ids.
 * Method: validate built assets; the 1,024-character value is accepted, 1,025 refused.
 */
import { describe, expect, test } from 'bun:test';
import { STORED_ID_CHARS_MAX } from '../../src/core/models/common.ts';
import { buildAssets, fresh, ms, run } from './helpers.ts';

const NOW = ms('2024-03-01T00:00:00Z');
const assets = buildAssets({
  modules: [
    { number: 'M-F', licensingModel: 'Floating', props: { maxCheckoutValidity: '300' }, templates: [{ number: 'T-F', licenseType: 'FLOATING', props: { maxSessions: '5' } }] },
    { number: 'M-N', licensingModel: 'NodeLocked', props: { nodeSecretMode: 'CLIENT' }, templates: [{ number: 'T-N', licenseType: 'QUANTITY', props: { quota: '5' } }] },
  ],
  licenses: [
    { number: 'L-F', template: 'T-F', props: { maxSessions: '5' } },
    { number: 'L-N', template: 'T-N', props: { quota: '5' } },
  ],
});

describe('stored ids', () => {
  for (const [name, body] of [
    ['sessionId', (id: string) => `productModuleNumber0=M-F&sessionId0=${id}&action0=checkOut`],
    ['nodeSecret', (id: string) => `productModuleNumber0=M-N&nodeSecret0=${id}`],
  ] as const) {
    test(`${name}: ${STORED_ID_CHARS_MAX} characters are stored, one more is a malformed request`, () => {
      const ok = run(assets, fresh(), body('a'.repeat(STORED_ID_CHARS_MAX)), NOW);
      expect(ok.outcome.events.length).toBe(1);
      const long = run(assets, fresh(), body('a'.repeat(STORED_ID_CHARS_MAX + 1)), NOW);
      expect(long.outcome.events).toEqual([]);
      expect(long.outcome.envelope.items).toEqual([]);
      expect(long.outcome.envelope.infos).toEqual([
        { id: 'MalformedRequestException', type: 'ERROR', value: `Parameter '${name}' for product module '${name === 'sessionId' ? 'M-F' : 'M-N'}' is longer than 1024 characters` },
      ]);
      expect(long.state).toEqual(fresh());
    });
  }
});
