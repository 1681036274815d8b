// Goal: run-agent never writes unsealed counter changes into a database bound
// to a smart card, not even with --without-card. Method: a seeded database
// whose meta names a card, then runCli --action=run-agent.
import { expect, test } from 'bun:test';
import { runCli } from '../../src/cli/run.ts';
import { captureIo } from '../helpers.ts';
import { seedStore } from '../support/seed-store.ts';

test('a card-bound working directory is refused with exit 6, with and without --without-card', async () => {
  const { store, cwd } = seedStore([]);
  store.importTransaction((tx) => tx.setMeta({ ...tx.meta(), withoutCard: false, cardSerial: 'D2760001240103040006123456780000' }));
  await store.close();
  for (const extra of [[], ['--without-card']]) {
    const io = captureIo();
    const code = await runCli(['--action=run-agent', '--port=0', '--nlic.apikey=k', ...extra], io, { cwd });
    expect(code).toBe(6);
    expect(io.err).toContain('bound to smart card D2760001240103040006123456780000');
  }
});
