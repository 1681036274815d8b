/**
 * The read-only status page (`GET /status` on the admin listener): one HTML
 * document with inline CSS and a server-generated SVG chart — no scripts, no
 * frontend build, nothing loaded from elsewhere. It refreshes itself every
 * 30 seconds.
 *
 * What a person looks at: is the last import recent, are seats running out
 * (chart of seats in use over time, utilisation bars per module), which
 * licensees hold which sessions, and the warning level each would be told.
 */
import { capacityWarningLevel, type WarningLevel } from '../../core/models/common.ts';
import type { DatabaseFiles, LicenseeActivity, StatusSnapshot } from '../../service/status.ts';
import { cardModeText } from '../../service/status.ts';
import type { ReadinessReport } from './readiness.ts';
import type { Sample } from './samples.ts';

export interface StatusPageInput {
  version: string;
  snapshot: StatusSnapshot;
  activity: { items: LicenseeActivity[]; total: number };
  samples: Sample[];
  sampleIntervalMs: number;
  files?: DatabaseFiles;
  readiness: ReadinessReport;
  validateRequests: number;
  /** Tiles a serving mode adds after the agent's own (admin-app.ts, AdminExtension); plain text. */
  extraTiles?: readonly StatusTile[];
  /** Warnings a serving mode adds; plain text. */
  extraWarnings?: readonly string[];
}

/** One tile of the status page: a title, its value, and an optional line below. Plain text, escaped here. */
export interface StatusTile {
  title: string;
  value: string;
  detail?: string;
}

function esc(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
}

function hhmm(ms: number): string {
  return new Date(ms).toISOString().slice(11, 16);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${sign}${s} s`;
  const d = Math.floor(s / 86_400);
  s -= d * 86_400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  if (d > 0) return `${sign}${d} d ${h} h`;
  if (h > 0) return `${sign}${h} h ${m} min`;
  return `${sign}${m} min`;
}

/** Pay-per-Use rule of the validation core: nothing left red, ≥ 80 % used yellow. */
function quantityLevel(used: number, total: number): WarningLevel {
  if (total <= 0 || used >= total) return 'RED';
  return used / total >= 0.8 ? 'YELLOW' : 'GREEN';
}

/** A usage bar coloured like the warning level a client would be told (seats: the core's own rule). */
function bar(used: number, total: number, label: string, kind: 'seats' | 'quantity'): string {
  const level = kind === 'seats' ? capacityWarningLevel(used, total) : quantityLevel(used, total);
  const pct = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 100;
  return `<div class="bar" title="${esc(label)}"><div class="fill ${level.toLowerCase()}" style="width:${pct}%"></div><span>${esc(label)}</span></div>`;
}

function pill(level: string): string {
  const known = ['GREEN', 'YELLOW', 'RED'].includes(level) ? level.toLowerCase() : 'none';
  return `<span class="pill ${known}">${esc(level || '–')}</span>`;
}

/** The smallest of 1, 2, 5, 10, 20, 50, … that is at least `raw` (axis ticks people can read). */
function niceStep(raw: number): number {
  let magnitude = 1;
  for (;;) {
    for (const step of [1, 2, 5]) if (step * magnitude >= raw) return step * magnitude;
    magnitude *= 10;
  }
}

/** Seats in use over time (area), the capacity (dashed) and validate requests per interval (bars). */
export function seatsChart(samples: readonly Sample[], intervalMs: number): string {
  if (samples.length < 2) {
    return `<p class="muted" id="chart-empty">Collecting samples: the chart appears after the second sample (one every ${esc(formatDuration(intervalMs))}).</p>`;
  }
  const width = 760;
  const height = 220;
  const left = 44;
  const right = 44;
  const top = 14;
  const bottom = 28;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const first = samples[0]!.atMs;
  const last = samples[samples.length - 1]!.atMs;
  const span = Math.max(1, last - first);
  const maxSeats = Math.max(1, ...samples.map((s) => Math.max(s.seatsInUse, s.seatCapacity)));
  const maxValidations = Math.max(1, ...samples.map((s) => s.validations));
  const x = (ms: number) => left + ((ms - first) / span) * plotW;
  const y = (v: number) => top + plotH - (v / maxSeats) * plotH;
  const yv = (v: number) => top + plotH - (v / maxValidations) * plotH;
  const f = (n: number) => n.toFixed(1);

  const barWidth = Math.max(1, (plotW / samples.length) * 0.6);
  const bars = samples
    .map((s) => `<rect class="req" x="${f(x(s.atMs) - barWidth / 2)}" y="${f(yv(s.validations))}" width="${f(barWidth)}" height="${f(top + plotH - yv(s.validations))}"/>`)
    .join('');
  const line = samples.map((s, i) => `${i === 0 ? 'M' : 'L'}${f(x(s.atMs))},${f(y(s.seatsInUse))}`).join(' ');
  const area = `${line} L${f(x(last))},${f(top + plotH)} L${f(x(first))},${f(top + plotH)} Z`;
  const capacity = samples.map((s, i) => `${i === 0 ? 'M' : 'L'}${f(x(s.atMs))},${f(y(s.seatCapacity))}`).join(' ');

  const ticks: string[] = [];
  const step = niceStep(maxSeats / 4);
  for (let v = 0; v <= maxSeats; v += step) {
    ticks.push(`<line class="grid" x1="${left}" x2="${width - right}" y1="${f(y(v))}" y2="${f(y(v))}"/><text class="axis" x="${left - 6}" y="${f(y(v) + 4)}" text-anchor="end">${v}</text>`);
  }
  ticks.push(`<text class="axis req-axis" x="${width - right + 6}" y="${top + 10}">${maxValidations}</text>`);
  ticks.push(`<text class="axis req-axis" x="${width - right + 6}" y="${top + plotH}">0</text>`);
  const labels = [first, first + span / 2, last]
    .map((ms, i) => `<text class="axis" x="${f(x(ms))}" y="${height - 8}" text-anchor="${['start', 'middle', 'end'][i]}">${hhmm(ms)}</text>`)
    .join('');
  const now = samples[samples.length - 1]!;
  return `<svg id="seats-chart" role="img" viewBox="0 0 ${width} ${height}" width="100%" aria-label="Floating seats in use over time: now ${now.seatsInUse} of ${now.seatCapacity}">
<title>Floating seats in use over time</title>
${ticks.join('')}${bars}
<path class="area" d="${area}"/><path class="line" d="${line}"/><path class="cap" d="${capacity}"/>
${labels}
</svg>
<p class="legend"><span class="key line-key"></span>seats in use (left axis) <span class="key cap-key"></span>capacity <span class="key req-key"></span>validate requests per interval (right axis) — times in UTC</p>`;
}

export function renderStatusPage(input: StatusPageInput): string {
  const { snapshot, activity, files, readiness } = input;
  const runtime = snapshot.runtime;
  const modules = [...snapshot.definitions.modules.values()].sort((a, b) => a.number.localeCompare(b.number));
  const floating = modules.filter((m) => m.licensingModel === 'Floating');
  const capacity = floating.reduce((sum, m) => sum + m.floatingCapacity, 0);
  const lastImport = snapshot.lastImport;

  const warnings: string[] = [];
  for (const check of readiness.checks) if (!check.ok) warnings.push(`Not ready — ${check.name}: ${check.detail}`);
  if (snapshot.clockDriftMs !== undefined && snapshot.clockDriftMs < 0) {
    warnings.push(`The system clock is ${formatDuration(-snapshot.clockDriftMs)} behind a time the agent has answered at: was it set back?`);
  }
  for (const loose of files?.loose ?? []) warnings.push(`Readable by others: ${loose} (should be owner-only)`);
  warnings.push(...(input.extraWarnings ?? []));

  const importAge = lastImport ? snapshot.atMs - Date.parse(lastImport.importedAt) : undefined;
  const cards = [
    ['Last import', lastImport ? `${esc(lastImport.exportId)}<small>${esc(iso(Date.parse(lastImport.importedAt)))} (${esc(formatDuration(importAge ?? 0))} ago) from ${esc(lastImport.sourceHost)}</small>` : 'none'],
    ['Licensees', `${snapshot.definitions.counts.licensees}<small>${runtime.licenseesWithState} with runtime state</small>`],
    ['Floating seats in use', `${runtime.seatsInUseTotal} / ${capacity}<small>${floating.length} floating module(s)</small>`],
    ['Validate requests', `${input.validateRequests}<small>since the agent started</small>`],
    [
      'Journal',
      `${snapshot.journal.length} entries<small>${snapshot.journal.lastEntryAtMs !== undefined ? `newest ${esc(iso(snapshot.journal.lastEntryAtMs))}` : 'empty'}` +
        `${snapshot.journal.folded === undefined ? '' : ` · 1–${snapshot.journal.folded.throughSeq} folded ${esc(iso(snapshot.journal.folded.atMs))}`}</small>`,
    ],
    ['Card mode', esc(cardModeText(snapshot.card))],
    ['Database', `${files ? esc(formatBytes(files.sizeBytes)) : '?'}<small>${esc(files?.path ?? '')} · schema ${snapshot.schemaVersion}</small>`],
    [
      'Clock vs journal',
      snapshot.clockDriftMs !== undefined
        ? `${esc(formatDuration(snapshot.clockDriftMs))}<small>system clock minus the newest time the database has seen (negative: clock set back)</small>`
        : '–<small>journal empty</small>',
    ],
    ...(input.extraTiles ?? []).map((tile) => [esc(tile.title), `${esc(tile.value)}${tile.detail !== undefined ? `<small>${esc(tile.detail)}</small>` : ''}`]),
  ]
    .map(([title, body]) => `<div class="card"><h3>${title}</h3><div class="value">${body}</div></div>`)
    .join('');

  const moduleRows = modules
    .map((m) => {
      const used = runtime.seatsInUse.get(m.number) ?? 0;
      const booked = runtime.quantityBooked.get(m.number) ?? 0;
      let usage = '<span class="muted">–</span>';
      if (m.licensingModel === 'Floating') usage = bar(used, m.floatingCapacity, `${used} of ${m.floatingCapacity} seats`, 'seats');
      else if (m.licensingModel === 'PayPerUse') {
        const q = m.quantityUsedImported + booked;
        usage = bar(q, m.quantityTotal, `${q} of ${m.quantityTotal} used (${booked} booked here)`, 'quantity');
      }
      return `<tr><td>${esc(m.number)}</td><td>${esc(m.name)}</td><td>${esc(m.licensingModel)}${m.active ? '' : ' <span class="muted">(inactive)</span>'}</td><td class="num">${m.licensees}</td><td>${usage}</td></tr>`;
    })
    .join('');

  const licenseeRows = activity.items
    .flatMap((l) => {
      // Modules the licensee holds a license for or used; the others would only repeat "RED, no license".
      const rows = l.modules.filter((m) => m.licensed || m.sessions.length > 0 || m.quantityBooked > 0);
      const shown = rows.length > 0 ? rows : l.modules.slice(0, 1);
      return shown.map((m, i) => {
        const sessions = m.sessions.length
          ? `<ul class="sessions">${m.sessions.map((s) => `<li><code>${esc(s.sessionId)}</code> until ${esc(iso(s.expiresMs).slice(11))}</li>`).join('')}</ul>`
          : '';
        let detail = '';
        if (m.seatCapacity !== undefined) detail = bar(m.sessions.length, m.seatCapacity, `${m.sessions.length} of ${m.seatCapacity} seats`, 'seats') + sessions;
        else if (m.remainingQuantity !== undefined) detail = `remaining ${esc(m.remainingQuantity)}${m.quantityBooked ? `, ${m.quantityBooked} booked here` : ''}`;
        else if (m.quantityBooked) detail = `${m.quantityBooked} booked here`;
        const head = i === 0 ? `<td rowspan="${shown.length}">${esc(l.number)}${l.name ? `<small>${esc(l.name)}</small>` : ''}${l.active ? '' : ' <span class="muted">(inactive)</span>'}</td>` : '';
        return `<tr>${head}<td>${esc(m.moduleNumber)}</td><td>${esc(m.licensingModel)}</td><td>${pill(String(m.warningLevel))}</td><td>${detail}</td></tr>`;
      });
    })
    .join('');
  const more = activity.total > activity.items.length ? `<p class="muted">Showing ${activity.items.length} of ${activity.total} licensees with runtime state.</p>` : '';

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NetLicensing Agent status</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#1d3557;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}header p{margin:2px 0 0;opacity:.8;font-size:12px}
main{padding:16px 24px;max-width:1100px}
h2{font-size:16px;margin:22px 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:10px 12px}.card h3{margin:0 0 4px;font-size:12px;color:#5a6878;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:18px;font-weight:600;word-break:break-all}.card small,td small{display:block;font-size:12px;font-weight:400;color:#5a6878}
.warn{background:#fff4e5;border:1px solid #f0b35b;border-radius:6px;padding:8px 12px;margin:4px 0}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde3ea}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e8edf2;vertical-align:top}th{background:#eef2f6;font-size:12px;color:#44515f}
td.num{text-align:right}
.bar{position:relative;background:#e8edf2;border-radius:4px;height:20px;min-width:220px}.bar .fill{position:absolute;left:0;top:0;bottom:0;border-radius:4px}.bar span{position:relative;padding-left:8px;font-size:12px;line-height:20px}
.green{background:#8fd19e}.yellow{background:#ffd166}.red{background:#ef7b7b}.none{background:#d7dde3}
.pill{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.sessions{margin:4px 0 0;padding-left:18px;font-size:12px}
.muted{color:#7a8795}
svg{background:#fff;border:1px solid #dde3ea;border-radius:6px}
.grid{stroke:#e8edf2}.axis{font-size:11px;fill:#5a6878}.area{fill:#457b9d;fill-opacity:.18}.line{fill:none;stroke:#1d3557;stroke-width:2}.cap{fill:none;stroke:#e63946;stroke-width:1.5;stroke-dasharray:6 4}.req{fill:#a8dadc}
.legend{font-size:12px;color:#5a6878}.key{display:inline-block;width:14px;height:4px;margin:0 4px 2px 10px;vertical-align:middle}.line-key{background:#1d3557}.cap-key{background:#e63946}.req-key{background:#a8dadc;height:8px}
</style></head>
<body>
<header><h1>NetLicensing Agent — status</h1><p>${esc(input.version)} · ${esc(iso(snapshot.atMs))} · ${readiness.ready ? 'ready' : 'NOT READY'}</p></header>
<main>
${warnings.map((w) => `<div class="warn">${esc(w)}</div>`).join('\n')}
<section class="cards">${cards}</section>
<h2>Floating seats in use</h2>
${seatsChart(input.samples, input.sampleIntervalMs)}
<h2>Product modules</h2>
<table id="modules"><thead><tr><th>Module</th><th>Name</th><th>Licensing model</th><th>Licensees</th><th>Usage</th></tr></thead><tbody>${moduleRows || '<tr><td colspan="5" class="muted">no modules</td></tr>'}</tbody></table>
<h2>Licensees in use</h2>
<table id="licensees"><thead><tr><th>Licensee</th><th>Module</th><th>Licensing model</th><th>Warning level</th><th>Seats, sessions, quantities</th></tr></thead><tbody>${licenseeRows || '<tr><td colspan="5" class="muted">no licensee has used the agent yet</td></tr>'}</tbody></table>
${more}
<p class="muted">Read-only. JSON: <a href="/status.json">/status.json</a> · metrics: <a href="/metrics">/metrics</a> · readiness: <a href="/ready">/ready</a></p>
</main></body></html>
`;
}
