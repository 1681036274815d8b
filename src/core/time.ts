/**
 * Date arithmetic for licensing, on epoch milliseconds (UTC). Pure: the
 * current time is always passed in by the caller.
 */

/**
 * `yyyy-MM-ddTHH:mm:ss.SSSZ`, the cloud's output format. A validate formats
 * the same few instants again and again (an expiry, now + ttl within the same
 * millisecond): a small direct-mapped memo skips the Date object for those.
 */
export function toIso(ms: number): string {
  // Multiplicative hash of the low bits: the instants of one answer differ by round
  // amounts (now, now + 10 min, now + 1 h), which `ms & 63` would put in one slot.
  const slot = Math.imul(ms | 0, 0x9e3779b1) >>> 26;
  if (isoMemoMs[slot] === ms) return isoMemoText[slot]!;
  const text = new Date(ms).toISOString();
  isoMemoMs[slot] = ms;
  isoMemoText[slot] = text;
  return text;
}

const ISO_MEMO_SLOTS = 64; // 2 ** (32 - 26)
const isoMemoMs = new Float64Array(ISO_MEMO_SLOTS).fill(Number.NaN);
const isoMemoText: string[] = new Array<string>(ISO_MEMO_SLOTS).fill('');

/**
 * Parses an xsd:dateTime or xsd:date (the API accepts both on input).
 * Returns undefined for anything else, never NaN.
 */
export function parseIso(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(trimmed)) {
    return undefined;
  }
  // A date without a zone is taken as UTC so that results never depend on the host's zone.
  const withZone = /T\d{2}:\d{2}/.test(trimmed) && !/(Z|[+-]\d{2}:?\d{2})$/.test(trimmed)
    ? `${trimmed}Z`
    : trimmed;
  const ms = Date.parse(withZone);
  return Number.isFinite(ms) ? ms : undefined;
}

export type TimeVolumePeriod = 'DAY' | 'WEEK' | 'MONTH' | 'YEAR';

export function parsePeriod(text: string | undefined): TimeVolumePeriod {
  switch ((text ?? 'DAY').trim().toUpperCase()) {
    case 'WEEK':
      return 'WEEK';
    case 'MONTH':
      return 'MONTH';
    case 'YEAR':
      return 'YEAR';
    default:
      return 'DAY';
  }
}

const DAY_MS = 86_400_000;

/**
 * 9999-12-31T23:59:59.999Z: the last instant an ISO-8601 timestamp with a four-digit year names.
 * Later ones are written `+010000-...` (or, past year 275760, cannot be written at all: a 500),
 * and C#'s DateTime cannot hold them (its maximum is 9999-12-31).
 */
export const LAST_FOUR_DIGIT_YEAR_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * Adds `count` periods to `startMs`. Months and years are calendar months at
 * the same time of day (the cloud's 3 MONTH license from 2024-09-19T04:30:26Z
 * expires 2024-12-19T04:30:26Z); a day past the target month's end clamps to
 * its last day (Jan 31 + 1 MONTH = Feb 28/29). Capped at LAST_FOUR_DIGIT_YEAR_MS.
 */
export function addPeriod(startMs: number, count: number, period: TimeVolumePeriod): number {
  const endMs = addPeriodUncapped(startMs, count, period);
  // A vendor's "forever" (timeVolume 100000000 DAY, 9999 YEAR) ends at the last writable instant;
  // `!(<=)` also catches the NaN that Date.UTC gives past its range.
  return endMs <= LAST_FOUR_DIGIT_YEAR_MS ? endMs : LAST_FOUR_DIGIT_YEAR_MS;
}

function addPeriodUncapped(startMs: number, count: number, period: TimeVolumePeriod): number {
  switch (period) {
    case 'DAY':
      return startMs + count * DAY_MS;
    case 'WEEK':
      return startMs + count * 7 * DAY_MS;
    case 'MONTH':
      return addMonths(startMs, count);
    case 'YEAR':
      return addMonths(startMs, count * 12);
  }
}

function addMonths(startMs: number, months: number): number {
  const d = new Date(startMs);
  const year = d.getUTCFullYear();
  const month = d.getUTCMonth() + months;
  const targetYear = year + Math.floor(month / 12);
  const targetMonth = ((month % 12) + 12) % 12;
  const lastDay = new Date(Date.UTC(targetYear, targetMonth + 1, 0)).getUTCDate();
  const day = Math.min(d.getUTCDate(), lastDay);
  return Date.UTC(
    targetYear,
    targetMonth,
    day,
    d.getUTCHours(),
    d.getUTCMinutes(),
    d.getUTCSeconds(),
    d.getUTCMilliseconds(),
  );
}
