/**
 * The NetLicensing response envelope as a plain value: what both the XML and
 * the JSON writers render. Pure data, no I/O.
 *
 * Property order is kept as given: the writers emit it unchanged, so a model
 * can follow the order of the cloud's own samples.
 */

export type InfoType = 'ERROR' | 'WARNING' | 'INFO';

export interface Info {
  id: string;
  type: InfoType;
  value: string;
}

export type Property = readonly [name: string, value: string];

export interface WireList {
  name: string;
  properties: Property[];
  lists: WireList[];
}

export interface WireItem {
  type: string;
  properties: Property[];
  lists: WireList[];
}

export interface Paging {
  pagenumber: string;
  itemsnumber: string;
  totalpages: string;
  totalitems: string;
  hasnext: string;
}

export interface Envelope {
  infos: Info[];
  items: WireItem[];
  /** ISO-8601 UTC; absent means "do not cache" (floating check-in). */
  ttl?: string;
  id?: string;
  paging?: Paging;
}

export function errorEnvelope(id: string, value: string): Envelope {
  return { infos: [{ id, type: 'ERROR', value }], items: [] };
}
