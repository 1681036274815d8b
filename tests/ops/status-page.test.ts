// Goal: the status page on the admin listener shows a person what matters —
// last import, seats in use with their sessions, quantities, warning levels,
// and a chart of seats in use over time — as rendered by a real browser, with
// nothing loaded from anywhere else. Method: a seeded store with three
// floating licensees; validate traffic through the real app while a manual
// clock moves and the sampler takes a sample a "minute"; the admin listener
// on 127.0.0.1:0; headless Chromium (Debian package) driven by playwright-core
// checks visible content and takes a full-page screenshot (kept in
// $NLA_STATUS_SCREENSHOT when set, to look at).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { createOps, type Ops } from '../../src/server/ops/ops.ts';
import { SampleRing } from '../../src/server/ops/samples.ts';
import { seatsChart } from '../../src/server/ops/status-page.ts';
import type { RunningServer } from '../../src/server/serve.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { tempDir } from '../helpers.ts';
import { apiKeyAuth, demoEntities, entity, seedStore } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T09:00:00.000Z');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

let store: AssetStore;
let ops: Ops;
let admin: RunningServer;
let browser: Browser;
const clock = new ManualClock(NOW);

beforeAll(async () => {
  const entities = demoEntities();
  entities.push(entity('Licensee', 'ACME-Engineering', { productNumber: 'P-TEST', name: 'ACME Engineering' }));
  entities.push(entity('License', 'LIC-ACME', { licenseeNumber: 'ACME-Engineering', licenseTemplateNumber: 'T-FLOAT', maxSessions: '5' }));
  entities.push(entity('Licensee', 'Globex-Lab', { productNumber: 'P-TEST', name: 'Globex Lab' }));
  entities.push(entity('License', 'LIC-GLOBEX', { licenseeNumber: 'Globex-Lab', licenseTemplateNumber: 'T-FLOAT', maxSessions: '3' }));
  ({ store } = seedStore(entities));
  ops = createOps({ store, clock, log: silentLogger(), build: { version: '0.1.0', commit: 'test', bun: Bun.version }, versionText: 'netlicensing-agent 0.1.0 (build test)', cardDisabled: false });
  const app = createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false, observer: ops.metrics });
  const validate = (licensee: string, body: string) =>
    app.request(`/rest/licensee/${licensee}/validate`, {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
  const checkOut = (licensee: string, session: string) => validate(licensee, `productModuleNumber0=M-FLOAT&sessionId0=${session}&action0=checkOut`);
  const checkIn = (licensee: string, session: string) => validate(licensee, `productModuleNumber0=M-FLOAT&sessionId0=${session}&action0=checkIn`);

  // A morning: seats fill up over half an hour, two are handed back, credits get used.
  const plan: [string, string, 'out' | 'in'][] = [
    ['ACME-Engineering', 'cad-ws-01', 'out'],
    ['ACME-Engineering', 'cad-ws-02', 'out'],
    ['Globex-Lab', 'lab-pc-7', 'out'],
    ['ACME-Engineering', 'cad-ws-03', 'out'],
    ['L-1', 'build-agent', 'out'],
    ['ACME-Engineering', 'cad-ws-04', 'out'],
    ['Globex-Lab', 'lab-pc-8', 'out'],
    ['L-1', 'laptop-anna', 'out'],
    ['ACME-Engineering', 'cad-ws-02', 'in'],
    ['Globex-Lab', 'lab-pc-9', 'out'],
    ['ACME-Engineering', 'cad-ws-05', 'out'],
    ['Globex-Lab', 'lab-pc-7', 'in'],
  ];
  const held = new Map<string, string>();
  for (let minute = 0; minute < 30; minute++) {
    const step = plan[Math.floor(minute / 2)];
    if (step && minute % 2 === 0) {
      const [licensee, session, action] = step;
      expect((await (action === 'out' ? checkOut(licensee, session) : checkIn(licensee, session))).status).toBe(200);
      if (action === 'out') held.set(session, licensee);
      else held.delete(session);
    }
    // Clients extend their seats before maxCheckoutValidity (300 s) runs out.
    if (minute % 4 === 3) for (const [session, licensee] of held) await checkOut(licensee, session);
    if (minute % 3 === 0) await validate('L-1', 'productModuleNumber0=M-PPU&usedQuantity0=3');
    await ops.sampler.sample();
    clock.advance(60_000);
  }
  admin = ops.listenAdmin({ host: '127.0.0.1', port: 0 });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await ops?.stop();
  await store?.close();
});

describe('status page in Chromium', () => {
  test('shows import, seats with sessions, quantities, warning levels and the seats chart; loads nothing from elsewhere', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const origin = `http://127.0.0.1:${admin.port}`;
    const foreign: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(origin)) foreign.push(request.url());
    });
    const response = await page.goto(`${origin}/status`);
    expect(response?.status()).toBe(200);

    await expect(page.getByRole('heading', { name: 'NetLicensing Agent — status' }).isVisible()).resolves.toBe(true);
    const importCard = page.locator('.card', { hasText: 'Last import' });
    expect(await importCard.innerText()).toContain('test-export');

    // Seats: 4 of 5 (ACME), 2 of 3 (Globex), 2 of 2 (L-1) in use → 8 of 10 for the module.
    const seatsCard = page.locator('.card', { hasText: 'Floating seats in use' });
    expect(await seatsCard.innerText()).toContain('8 / 10');
    const floatRow = page.locator('#modules tr', { hasText: 'M-FLOAT' });
    expect(await floatRow.innerText()).toContain('8 of 10 seats');
    const ppuRow = page.locator('#modules tr', { hasText: 'M-PPU' });
    expect(await ppuRow.innerText()).toContain('30 of 35 used (30 booked here)');

    const licensees = page.locator('#licensees');
    const acme = await licensees.locator('tr', { hasText: 'ACME-Engineering' }).first().innerText();
    expect(acme).toContain('4 of 5 seats');
    for (const session of ['cad-ws-01', 'cad-ws-03', 'cad-ws-04', 'cad-ws-05']) expect(acme).toContain(session);
    expect(acme).not.toContain('cad-ws-02'); // checked in
    expect(acme).toContain('YELLOW'); // 80 % of the seats taken
    expect(await licensees.innerText()).toContain('lab-pc-8');
    expect(await licensees.locator('tr', { hasText: 'laptop-anna' }).innerText()).toContain('2 of 2 seats');

    const chart = page.locator('svg#seats-chart');
    expect(await chart.isVisible()).toBe(true);
    expect(await chart.getAttribute('aria-label')).toBe('Floating seats in use over time: now 8 of 10');
    const box = await chart.boundingBox();
    expect(box!.width).toBeGreaterThan(600);
    expect(box!.height).toBeGreaterThan(120);

    const shot = process.env['NLA_STATUS_SCREENSHOT'] ?? join(tempDir(), 'status.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(20_000);
    expect(foreign).toEqual([]);
    await page.close();
  }, 60_000);

  test('the page is read-only and also available as JSON', async () => {
    const base = `http://127.0.0.1:${admin.port}`;
    expect((await fetch(`${base}/status`, { method: 'POST' })).status).toBe(404);
    const json = (await (await fetch(`${base}/status.json`)).json()) as {
      runtime: { seatsInUseTotal: number };
      samples: { seatsInUse: number }[];
      licensees: { total: number };
    };
    expect(json.runtime.seatsInUseTotal).toBe(8);
    expect(json.samples).toHaveLength(30);
    expect(json.samples.at(-1)!.seatsInUse).toBe(8);
    expect(json.licensees.total).toBe(3);
  });
});

describe('samples and chart', () => {
  test('the ring keeps the newest samples in order', () => {
    const ring = new SampleRing(3);
    for (let i = 1; i <= 5; i++) ring.push({ atMs: i, seatsInUse: i, seatCapacity: 9, validations: 0 });
    expect(ring.list().map((s) => s.atMs)).toEqual([3, 4, 5]);
  });

  test('with fewer than two samples the page says it is collecting instead of drawing', () => {
    expect(seatsChart([], 60_000)).toContain('Collecting samples');
    expect(seatsChart([{ atMs: 1, seatsInUse: 0, seatCapacity: 1, validations: 0 }], 60_000)).not.toContain('<svg');
  });
});
