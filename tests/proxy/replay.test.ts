// Goal: what run-agent decided while the upstream was unreachable reaches
// the upstream afterwards exactly once and in order; the local copy then
// agrees with the upstream (usage counted once); contradicting answers are
// reported as conflicts (log, stats, stored record), never dropped; a restart
// during the outage loses nothing. Method: stand-in upstream (a real offline
// agent, tests/proxy/support.ts) whose runtime state shows what it counted;
// the proxy in-process with a manual clock; replays driven with drainReplay().
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { apiKeyAuth, vendorAuth, VENDOR } from '../support/seed-store.ts';
import { COOL_DOWN_MS, form, moduleProperty, startProxy, StandinUpstream, type ProxyFixture } from './support.ts';
import { NetLicensingRestClient } from '../../src/export/netlicensing-rest.ts';

let upstream: StandinUpstream;
let fixture: ProxyFixture;
const L2 = 'L 2/ä';
const json = (body: string) => form(body, { authorization: apiKeyAuth(), accept: 'application/json' });
const validate = (f: ProxyFixture, body: string, licensee = 'L-1') =>
  f.request(`/rest/licensee/${encodeURIComponent(licensee)}/validate`, json(body));

/** A validate through the healthy proxy (dryRun: the upstream starts no trial) and the refresh it causes. */
async function warmUp(f: ProxyFixture, licensees: string[] = ['L-1']): Promise<void> {
  for (const licensee of licensees) {
    const res = await f.request(`/rest/licensee/${encodeURIComponent(licensee)}/validate`, form('dryRun=true', { authorization: vendorAuth() }));
    expect(res.status).toBe(200);
  }
  await f.proxy.idle();
}

/** What the upstream's database holds (it receives acknowledged changes with a checkpoint). */
const upstreamUsed = async () => {
  await upstream.store.settled();
  return upstream.store.getRuntime('L-1').usedQuantity['LIC-PPU'] ?? 0;
};

beforeEach(() => {
  upstream = StandinUpstream.start();
});
afterEach(async () => {
  await fixture.close();
  await upstream.close();
});

describe('replay after recovery', () => {
  test('7 × usedQuantity=1 offline: the upstream counts 7 more, once; the local copy then agrees', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    const before = await upstreamUsed();
    await upstream.stop();
    for (let i = 1; i <= 7; i++) {
      const res = await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
      expect(res.status).toBe(200);
      expect(await moduleProperty(res, 'M-PPU', 'remainingQuantity')).toBe(String(35 - before - i));
    }
    expect(fixture.proxy.stats.localAnswers).toBe(7);
    expect(fixture.proxy.stats.replayPending).toBe(7);
    // The store's backlog is read from LMDB, which the entries reach with a checkpoint.
    await fixture.store.settled();
    expect([...fixture.store.replayBacklog()].map((e) => e.form)).toEqual(Array(7).fill('productModuleNumber0=M-PPU&usedQuantity0=1'));

    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 7, conflicts: 0 });
    expect(await upstreamUsed()).toBe(before + 7);
    expect(upstream.replayHits()).toBe(7);
    expect(fixture.store.replayCursor()).toBe(7);
    expect(fixture.proxy.stats.replayPending).toBe(0);

    // Nothing is sent twice.
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 0, conflicts: 0 });
    expect(upstream.replayHits()).toBe(7);

    // The refresh after the replay brings the upstream's count; the local usage is booked back once.
    await fixture.proxy.idle();
    expect(fixture.store.getRuntime('L-1').usedQuantity['LIC-PPU']).toBe(0);
    expect([...fixture.store.replayBacklog()]).toHaveLength(0);
    expect(verifyDatabase(fixture.store).ok).toBe(true);
    const upstreamRemaining = await moduleProperty(await upstream.direct('/licensee/L-1/validate', json('productModuleNumber0=M-PPU')), 'M-PPU', 'remainingQuantity');
    expect(upstreamRemaining).toBe(String(35 - before - 7));
    upstream.mode = 'failing';
    const local = await validate(fixture, 'productModuleNumber0=M-PPU');
    expect(fixture.proxy.stats.localAnswers).toBe(8);
    expect(await moduleProperty(local, 'M-PPU', 'remainingQuantity')).toBe(upstreamRemaining);
  });

  test('order is kept: check-out, check-in, check-out and a trial start arrive as made', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture, ['L-1', L2]);
    await upstream.stop();
    expect((await validate(fixture, 'productModuleNumber0=M-FLOAT&sessionId0=s1&action0=checkOut')).status).toBe(200);
    expect((await validate(fixture, 'productModuleNumber0=M-FLOAT&sessionId0=s1&action0=checkIn')).status).toBe(200);
    expect((await validate(fixture, 'productModuleNumber0=M-FLOAT&sessionId0=s2&action0=checkOut')).status).toBe(200);
    // A read-only validate changes nothing and is not replayed.
    expect((await validate(fixture, 'productModuleNumber0=M-SUB')).status).toBe(200);
    expect(fixture.proxy.stats.replayPending).toBe(3);
    // The first validate of L 2/ä starts its trial locally: that is replayed too.
    expect((await validate(fixture, '', L2)).status).toBe(200);
    expect(fixture.proxy.stats.replayPending).toBe(4);
    expect(upstream.store.getRuntime(L2).createdLicenses).toEqual({});

    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 4, conflicts: 0 });
    await upstream.store.settled();
    expect([...(upstream.store.getRuntime('L-1').sessions['M-FLOAT']?.keys() ?? [])]).toEqual(['s2']);
    expect(Object.keys(upstream.store.getRuntime(L2).createdLicenses)).toEqual(['T-TRY-TRIAL']);
    expect(upstream.seen.filter((r) => r.userAgent.includes('replay')).map((r) => r.path)).toEqual([
      '/core/v2/rest/licensee/L-1/validate',
      '/core/v2/rest/licensee/L-1/validate',
      '/core/v2/rest/licensee/L-1/validate',
      `/core/v2/rest/licensee/${L2}/validate`,
    ]);
  });

  test('after recovery a licensee with a backlog stays local until its backlog is replayed; replay starts by itself', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture, ['L-1', L2]);
    await upstream.stop();
    await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    // L-1 has a backlog: answered locally (and appended), even though the upstream is back.
    const res = await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
    expect(res.status).toBe(200);
    expect(fixture.proxy.stats.backlogAnswers).toBe(1);
    expect(fixture.proxy.stats.replayPending).toBe(2);
    // A forwarded request proves the upstream reachable and starts the replay in the background.
    expect((await validate(fixture, '', L2)).status).toBe(200);
    await fixture.proxy.idle();
    expect(fixture.proxy.stats.replayed).toBe(2);
    expect(await upstreamUsed()).toBe(2);
    // Backlog empty: L-1 is forwarded again.
    const forwarded = fixture.proxy.stats.forwarded;
    await validate(fixture, 'productModuleNumber0=M-PPU');
    expect(fixture.proxy.stats.forwarded).toBe(forwarded + 1);
  });
});

describe('replay retries', () => {
  test('the breaker open before the first local change: a retry is due, and the replay runs with no other request', async () => {
    const due: { ms: number; retry: () => void }[] = [];
    fixture = startProxy(upstream, {
      scheduleReplayRetry: (ms, retry) => {
        const entry = { ms, retry };
        due.push(entry);
        return () => void due.splice(due.indexOf(entry), 1);
      },
    });
    await warmUp(fixture);
    await upstream.stop();
    // A read fails first and opens the breaker (threshold 1 here), before any counter change.
    expect((await fixture.request('/rest/licensee/L-1', { headers: { authorization: vendorAuth() } })).status).toBe(200);
    expect(fixture.proxy.stats.breakerState).toBe('open');
    expect((await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1')).status).toBe(200);
    expect(fixture.proxy.stats.replayPending).toBe(1);
    // The local answer made sure a retry is due, at the end of the cool-down.
    expect(due.map((d) => d.ms)).toEqual([COOL_DOWN_MS]);
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    due.shift()!.retry();
    // The retry's drain runs in the background (nothing else is asked for): wait for it, up to 2 s.
    for (let waited = 0; fixture.proxy.stats.replayed === 0 && waited < 2_000; waited += 10) await Bun.sleep(10);
    await fixture.proxy.idle();
    expect(fixture.proxy.stats.replayed).toBe(1);
    expect(fixture.proxy.stats.replayPending).toBe(0);
    expect(await upstreamUsed()).toBe(1);
    expect(fixture.proxy.stats.breakerState).toBe('closed');
  });
});

describe('conflicts', () => {
  test('the upstream sold the same seats meanwhile: reported in the log, the stats and a stored record', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    await upstream.stop();
    for (const id of ['s1', 's2']) {
      const res = await validate(fixture, `productModuleNumber0=M-FLOAT&sessionId0=${id}&action0=checkOut`);
      expect(await moduleProperty(res, 'M-FLOAT', 'valid')).toBe('true');
    }
    // Meanwhile other clients take both seats at the upstream directly.
    for (const id of ['x1', 'x2']) {
      const res = await upstream.direct('/licensee/L-1/validate', json(`productModuleNumber0=M-FLOAT&sessionId0=${id}&action0=checkOut`));
      expect(await moduleProperty(res, 'M-FLOAT', 'valid')).toBe('true');
    }
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 2, conflicts: 2 });
    const conflicts = [...fixture.store.replayConflicts()];
    expect(conflicts).toHaveLength(2);
    expect(conflicts[0]).toMatchObject({
      seq: 1,
      licenseeNumber: 'L-1',
      form: 'productModuleNumber0=M-FLOAT&sessionId0=s1&action0=checkOut',
      local: { status: 200, valid: { 'M-FLOAT': 'true' } },
      upstream: { status: 200, valid: { 'M-FLOAT': 'false' } },
    });
    expect(conflicts[0]!.message).toContain('module M-FLOAT: the agent answered valid=true, the upstream valid=false');
    expect(fixture.proxy.stats.replayConflicts).toBe(2);
    expect(fixture.logText()).toContain('replay conflict for licensee "L-1"');
    // Acknowledged all the same: the backlog moves on.
    expect(fixture.proxy.stats.replayPending).toBe(0);
  });

  test('the upstream consumed the same credits meanwhile: the replayed use makes it invalid there', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    await upstream.stop();
    const local = await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=30');
    expect(await moduleProperty(local, 'M-PPU', 'valid')).toBe('true');
    await upstream.direct('/licensee/L-1/validate', json('productModuleNumber0=M-PPU&usedQuantity0=30'));
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 1, conflicts: 1 });
    expect(await upstreamUsed()).toBe(60);
    expect([...fixture.store.replayConflicts()][0]?.upstream.valid['M-PPU']).toBe('false');
  });

  test('the upstream refuses the agent\'s credentials: nothing is acknowledged, the entry waits and is logged', async () => {
    fixture = startProxy(upstream, {
      upstream: { baseUrl: upstream.baseUrl, credentials: { kind: 'basic', username: VENDOR.user, password: 'wrong' }, timeoutMs: 2_000 },
      assetSource: new NetLicensingRestClient({ baseUrl: upstream.baseUrl, credentials: { kind: 'basic', username: VENDOR.user, password: VENDOR.password } }),
    });
    await warmUp(fixture);
    await upstream.stop();
    await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 0, conflicts: 0, stopped: 'refused' });
    expect(fixture.store.replayCursor()).toBe(0);
    expect(fixture.proxy.stats.replayPending).toBe(1);
    expect(fixture.proxy.stats.replayStalls).toBe(1);
    expect(fixture.logText()).toContain('refused by the upstream with HTTP 401');
  });
});

describe('durability', () => {
  test('a restart of the proxy during the outage loses nothing: the backlog is replayed after the restart', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    const dir = fixture.dir;
    await upstream.stop();
    for (let i = 0; i < 3; i++) await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
    await fixture.close();

    fixture = startProxy(upstream, { dir });
    expect(fixture.proxy.stats.replayPending).toBe(3);
    // Still offline after the restart: the local count continues where it was.
    const res = await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
    expect(await moduleProperty(res, 'M-PPU', 'remainingQuantity')).toBe('31');
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    const drained = await fixture.proxy.drainReplay();
    // Should this replay fail, the proxy's log says why (it once was the upstream stand-in's
    // first connection after its restart, refused: restart() now waits until one is answered).
    if (drained.replayed !== 4) console.error(`replay after the restart: ${JSON.stringify(drained)}\n${fixture.logText()}`);
    expect(drained).toEqual({ replayed: 4, conflicts: 0 });
    expect(await upstreamUsed()).toBe(4);
  });

  test('the documented window: when the acknowledgement cannot be written, the request is sent again', async () => {
    let failAck = false;
    fixture = startProxy(upstream, { failWrites: () => (failAck ? new Error('EIO: i/o error') : undefined) });
    await warmUp(fixture);
    await upstream.stop();
    await validate(fixture, 'productModuleNumber0=M-PPU&usedQuantity0=1');
    // The local change is in the database (checkpointed) before the acknowledgement's write fails.
    await fixture.store.settled();
    await upstream.restart();
    fixture.clock.advance(COOL_DOWN_MS);
    failAck = true;
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 0, conflicts: 0, stopped: 'store-failure' });
    expect(await upstreamUsed()).toBe(1);
    failAck = false;
    expect(await fixture.proxy.drainReplay()).toEqual({ replayed: 1, conflicts: 0 });
    // The upstream processed the one request in the window twice.
    expect(await upstreamUsed()).toBe(2);
    expect(upstream.replayHits()).toBe(2);
  });
});
