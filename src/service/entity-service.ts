/**
 * Read-only entity calls (`GET product`, `GET licensee/{n}`, lists with
 * `filter` and paging), answered from the store in the cloud's format, so
 * that clients that read entities work and one agent can be the export
 * source of another ("hub").
 */
import { errorEnvelope, type Envelope } from '../core/envelope.ts';
import { PARENT_PROPERTY, RESOURCE_KIND, type Entity, type EntityKind } from '../core/entities.ts';
import { applyRuntimeToLicense, effectiveLicenses, entityItem } from '../core/present.ts';
import type { AssetStore } from '../store/asset-store.ts';


/** Cloud resources that exist but have no offline equivalent. */
export const CLOUD_ONLY_RESOURCES = new Set(['transaction', 'paymentmethod', 'bundle', 'notification', 'utility']);

export const PAGE_ITEMS_DEFAULT = 100;
export const PAGE_ITEMS_MAX = 1000;

/** Properties never sent: a token's private signing key stays inside the agent. */
const HIDDEN_PROPERTIES: Partial<Record<EntityKind, readonly string[]>> = { Token: ['privateKey'] };

export type EntityResult = { status: 200; envelope: Envelope } | { status: 400; envelope: Envelope };

function present(entity: Entity): Entity {
  const hidden = HIDDEN_PROPERTIES[entity.kind];
  if (!hidden || !hidden.some((h) => h in entity.props)) return entity;
  const props = { ...entity.props };
  for (const h of hidden) delete props[h];
  return { ...entity, props };
}

/**
 * A license as the cloud would show it, with this agent's runtime changes. `placed`: the licenses
 * of licensees already looked at in this call, by licensee and number (a page of one licensee's
 * licenses reads them once).
 */
function withRuntime(store: AssetStore, entity: Entity, placed = new Map<string, Map<string, Entity>>()): Entity {
  if (entity.kind !== 'License') return entity;
  const licensee = entity.props['licenseeNumber'];
  if (licensee === undefined) return entity;
  let licenses = placed.get(licensee);
  if (licenses === undefined) {
    const runtime = store.getRuntime(licensee);
    // Registered node secrets are placed across the licensee's licenses (present.ts): decided on all of them.
    if (Object.keys(runtime.nodeSecrets).length === 0) return applyRuntimeToLicense(entity, runtime);
    const all = effectiveLicenses(licensee, store.children('License', licensee), runtime, (n) => store.getEntity('LicenseTemplate', n));
    placed.set(licensee, (licenses = new Map(all.map((license) => [license.number, license]))));
  }
  return licenses.get(entity.number) ?? entity;
}

export function getEntity(store: AssetStore, kind: EntityKind, number: string): EntityResult {
  const entity = kind === 'Licensee' ? store.resolveLicensee(number) : store.getEntity(kind, number);
  if (!entity) {
    return { status: 400, envelope: errorEnvelope('NotFoundException', `${kind} with the number '${number}' does not exist.`) };
  }
  return { status: 200, envelope: { infos: [], items: [entityItem(present(withRuntime(store, entity)))] } };
}

/** Parses the cloud's `filter` parameter: `key=value;key2=value2`. */
export function parseFilter(filter: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!filter) return out;
  for (const part of filter.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1));
  }
  return out;
}

/** Whether an entity has every property value the filter names. */
function matchesFilter(filter: ReadonlyMap<string, string>): (entity: Entity) => boolean {
  const pairs = [...filter];
  return (entity) => pairs.every(([k, v]) => entity.props[k] === v);
}

/**
 * A filter's matches, kept per store while its definitions stay the same (definitionsVersion):
 * paging through such a list read every entity for every page, so a hub answering another
 * agent's export or refresh (`token?filter=tokenType=APIKEY`, page after page) took time quadratic
 * in its keys (20,000: 10.7 s), and a parent's children (`licensee?filter=productNumber=P`)
 * 190-215 ms a page for 50,000 (the HTTP review's measurement). Kept as entity numbers (a page
 * reads its entities again), a few filters at a time.
 */
const FILTER_MATCHES = new WeakMap<AssetStore, { version: number; matches: Map<string, string[]> }>();
const FILTER_MATCHES_MAX = 8;

function matchingNumbers(store: AssetStore, kind: EntityKind, filter: ReadonlyMap<string, string>, parent: string | undefined): string[] {
  // Read before the entities: an import landing in between makes the entry stale, never wrong.
  const version = store.definitionsVersion();
  let memo = FILTER_MATCHES.get(store);
  if (memo === undefined || memo.version !== version) FILTER_MATCHES.set(store, (memo = { version, matches: new Map() }));
  const key = JSON.stringify([kind, parent ?? null, [...filter].sort()]);
  let matching = memo.matches.get(key);
  if (matching === undefined) {
    const source = parent === undefined ? store.listEntities(kind).items : store.children(kind, parent);
    matching = source.filter(matchesFilter(filter)).map((entity) => entity.number);
    if (memo.matches.size >= FILTER_MATCHES_MAX) memo.matches.delete(memo.matches.keys().next().value!);
    memo.matches.set(key, matching);
  }
  return matching;
}

export function listEntities(store: AssetStore, kind: EntityKind, filterText: string | undefined): EntityResult {
  const filter = parseFilter(filterText);
  const page = pagingNumber(filter.get('page') ?? '0');
  const itemsPerPage = pagingNumber(filter.get('items') ?? String(PAGE_ITEMS_DEFAULT));
  if (page === undefined || itemsPerPage === undefined || itemsPerPage < 1) {
    return { status: 400, envelope: errorEnvelope('MalformedRequestException', `Invalid paging in filter '${filterText ?? ''}'`) };
  }
  const size = Math.min(itemsPerPage, PAGE_ITEMS_MAX);
  filter.delete('page');
  filter.delete('items');

  const parentProperty = PARENT_PROPERTY[kind];
  const parent = parentProperty === undefined ? undefined : filter.get(parentProperty);
  // A licensee's licenses show its runtime state, which changes between pages: read for each (a licensee has few).
  let all: Entity[] | undefined;
  let pageItems: Entity[];
  let total: number;
  if (kind === 'License' && parent !== undefined) {
    const runtime = store.getRuntime(parent);
    all = effectiveLicenses(parent, store.children('License', parent), runtime, (n) => store.getEntity('LicenseTemplate', n));
  }
  if (parent !== undefined) filter.delete(parentProperty!);
  if (parent === undefined && filter.size === 0) {
    const result = store.listEntities(kind, { offset: page * size, limit: size });
    const placed = new Map<string, Map<string, Entity>>();
    pageItems = result.items.map((e) => withRuntime(store, e, placed));
    total = result.total;
  } else {
    if (all !== undefined) {
      const matching = all.filter(matchesFilter(filter));
      total = matching.length;
      pageItems = matching.slice(page * size, page * size + size);
    } else {
      const matching = matchingNumbers(store, kind, filter, parent);
      total = matching.length;
      pageItems = [];
      const placed = new Map<string, Map<string, Entity>>();
      for (const number of matching.slice(page * size, page * size + size)) {
        const entity = store.getEntity(kind, number);
        if (entity !== undefined) pageItems.push(withRuntime(store, entity, placed));
      }
    }
  }
  const totalPages = Math.ceil(total / size);
  return {
    status: 200,
    envelope: {
      infos: [],
      items: pageItems.map((e) => entityItem(present(e))),
      paging: {
        pagenumber: String(page),
        itemsnumber: String(pageItems.length),
        totalpages: String(totalPages),
        totalitems: String(total),
        hasnext: String(page + 1 < totalPages),
      },
    },
  };
}

/**
 * A page number or size as Java's Integer.parseInt reads one: digits, an optional '+', nothing
 * else (parseInt read `1e309`, `1.5` and `0x10` as 1, 1 and 0: a client's bug got the wrong page).
 */
function pagingNumber(text: string): number | undefined {
  if (!/^\+?\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

export function kindOfResource(resource: string): EntityKind | undefined {
  const name = resource.toLowerCase();
  return Object.hasOwn(RESOURCE_KIND, name) ? RESOURCE_KIND[name as keyof typeof RESOURCE_KIND] : undefined;
}
