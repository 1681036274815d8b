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
 * Returns undefined for anything else, never NaN: also for a day the month does not have
 * (2024-02-30, which Date.parse rolls over into March) and for an instant outside years
 * 0001–9999 once its zone is applied (no answer can name it: LAST_FOUR_DIGIT_YEAR_MS).
 */
export function parseIso(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  const parts = ISO_INPUT.exec(trimmed);
  if (parts === null) return undefined;
  const month = Number(parts[2]);
  const day = Number(parts[3]);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(Number(parts[1]), month)) return undefined;
  if (Number(parts[4]) > 23 || Number(parts[5]) > 59 || Number(parts[6]) > 59) return undefined;
  // A date without a zone is taken as UTC so that results never depend on the host's zone.
  const withZone = /T\d{2}:\d{2}/.test(trimmed) && !/(Z|[+-]\d{2}:?\d{2})$/.test(trimmed)
    ? `${trimmed}Z`
    : trimmed;
  const ms = Date.parse(withZone);
  return ms >= FIRST_FOUR_DIGIT_YEAR_MS && ms <= LAST_FOUR_DIGIT_YEAR_MS ? ms : undefined;
}

// Year, month, day, and hour, minute and second where given (an absent one is undefined, and
// Number(undefined) is NaN, which passes the range checks as nothing to check).
const ISO_INPUT = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
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

/** 0001-01-01T00:00:00.000Z, the first instant C#'s DateTime holds (Date.UTC would read year 1 as 1901). */
const FIRST_FOUR_DIGIT_YEAR_MS = Date.parse('0001-01-01T00:00:00.000Z');

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
