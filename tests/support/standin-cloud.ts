/**
 * A stand-in for the NetLicensing cloud's read API, for export tests (and,
 * reused by the lead, for export → import → validate tests).
 *
 * Serves `GET /core/v2/rest/<resource>[/<number>]` from an in-memory data
 * set in the cloud's JSON envelope (the shape of fixtures/json/derived and
 * fixtures/json/cpp), with HTTP Basic auth (vendor user/password or
 * `apiKey:<APIKEY token>`), and paging of 2 items per page
 * (`filter=…;page=N` is honoured, `items=M` is not). It deliberately IGNORES
 * every other filter criterion, so a client must check what it gets.
 *
 * Faults can be switched on per request pattern: an HTTP status with an
 * error envelope (401, 402 plan refusal, 403, 5xx), a dropped connection in
 * the middle of the body, or a slow answer.
 *
 * The data set (one licensee per licensing model, all of product
 * P-AGENT-DEMO, plus a second product) is exported as STANDIN_* constants and
 * standinDataSet().
 */
import { Hono, type Context } from 'hono';
import { RESOURCE_KIND, type Entity, type EntityKind, type EntityList } from '../../src/core/entities.ts';
import { LICENSING_MODELS, type LicensingModelName } from '../../src/core/models/index.ts';

// ---------------------------------------------------------------- data set

export const STANDIN_VENDOR = { username: 'vendor-demo', password: 'Vendor pässword:1' } as const;
/** Vendor-wide admin API key: authenticates the export and is itself exported. */
export const STANDIN_API_KEY = '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e01';
/** Vendor-wide API key with the default role (validate only). */
export const STANDIN_LICENSEE_ROLE_KEY = '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e02';
/** API key scoped to L-SUBSCRIPTION. */
export const STANDIN_SCOPED_KEY = '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e03';
/** API key scoped to L-OTHER (a licensee of the other product). */
export const STANDIN_OTHER_SCOPED_KEY = '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e04';
export const STANDIN_SHOP_TOKEN = '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e05';
export const STANDIN_DEFAULT_TOKEN = '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e06';

export const STANDIN_PRODUCT = 'P-AGENT-DEMO';
export const STANDIN_OTHER_PRODUCT = 'P-OTHER';
export const STANDIN_OTHER_LICENSEE = 'L-OTHER';

export type LicensingModel = LicensingModelName;
export { LICENSING_MODELS };

/** One licensee per licensing model. The Node-Locked one has a space and non-ASCII letters in its number. */
export const STANDIN_LICENSEES: Record<LicensingModel, string> = {
  TryAndBuy: 'L-TRYBUY',
  Subscription: 'L-SUBSCRIPTION',
  Rental: 'L-RENTAL',
  Floating: 'L-FLOATING',
  MultiFeature: 'L-MULTIFEATURE',
  PayPerUse: 'L-PAYPERUSE',
  Quota: 'L-QUOTA',
  NodeLocked: 'Kunde Müller 01',
  PricingTable: 'L-PRICINGTABLE',
};

/** Module number per licensing model. */
export const STANDIN_MODULES: Record<LicensingModel, string> = {
  TryAndBuy: 'M-TRYBUY',
  Subscription: 'M-SUBSCRIPTION',
  Rental: 'M-RENTAL',
  Floating: 'M-FLOATING',
  MultiFeature: 'M-MULTIFEATURE',
  PayPerUse: 'M-PAYPERUSE',
  Quota: 'M-QUOTA',
  NodeLocked: 'M-NODELOCKED',
  PricingTable: 'M-PRICINGTABLE',
};

function e(kind: EntityKind, props: Record<string, string>, lists?: EntityList[]): Entity {
  const number = props['number'];
  if (number === undefined) throw new Error('stand-in entity without number');
  const entity: Entity = { kind, number, props: { active: 'true', ...props } };
  if (lists) entity.lists = lists;
  return entity;
}

function module(model: LicensingModel, name: string, extra: Record<string, string> = {}): Entity {
  return e('ProductModule', {
    number: STANDIN_MODULES[model],
    name,
    licensingModel: model,
    productNumber: STANDIN_PRODUCT,
    inUse: 'true',
    ...extra,
  });
}

function template(number: string, model: LicensingModel, moduleName: string, props: Record<string, string>): Entity {
  return e('LicenseTemplate', {
    number,
    price: '0.00',
    currency: 'EUR',
    automatic: 'false',
    hidden: 'false',
    hideLicenses: 'false',
    productModuleNumber: STANDIN_MODULES[model],
    productModuleName: moduleName,
    inUse: 'true',
    ...props,
  });
}

function licensee(model: LicensingModel, props: Record<string, string> = {}): Entity {
  return e('Licensee', {
    number: STANDIN_LICENSEES[model],
    productNumber: STANDIN_PRODUCT,
    name: `Customer using ${model}`,
    markedForTransfer: 'false',
    inUse: 'true',
    ...props,
  });
}

function license(number: string, model: LicensingModel, templateNumber: string, props: Record<string, string>): Entity {
  return e('License', {
    number,
    price: '0.00',
    currency: 'EUR',
    hidden: 'false',
    licenseeNumber: STANDIN_LICENSEES[model],
    licenseTemplateNumber: templateNumber,
    ...props,
  });
}

function token(number: string, props: Record<string, string>): Entity {
  return e('Token', { number, expirationTime: '2099-12-31T23:59:59.000Z', vendorNumber: 'V-DEMO', ...props });
}

/** A fresh copy of the whole data set (entities of both products and all tokens). */
export function standinDataSet(): Entity[] {
  const product = e(
    'Product',
    {
      number: STANDIN_PRODUCT,
      name: 'Agent demo product',
      version: '2.1',
      licenseeAutoCreate: 'false',
      description: '<p>One module per licensing model</p>\r\n',
      licensingInfo: 'EULA: see https://example.com/eula?x=1&y=2',
      inUse: 'true',
      erpReference: 'ERP-4711',
    },
    [
      { name: 'discount', props: { totalPrice: '10.00', currency: 'EUR', amountFix: '1.50' } },
      { name: 'discount', props: { totalPrice: '100.00', currency: 'EUR', amountPercent: '10' } },
    ],
  );
  const modules = [
    module('TryAndBuy', 'Try & Buy module'),
    module('Subscription', 'Subscription module'),
    module('Rental', 'Rental module', { yellowThreshold: '10', redThreshold: '3' }),
    module('Floating', 'Floating module', { maxCheckoutValidity: '300' }),
    module('MultiFeature', 'Multi-Feature module'),
    module('PayPerUse', 'Pay-per-Use module'),
    module('Quota', 'Quota module'),
    module('NodeLocked', 'Node-Locked module', { nodeSecretMode: 'CLIENT' }),
    module('PricingTable', 'Pricing Table module', {
      skudef: '{"skudef":[{"number":"USERS","name":"Users","type":"QUOTA"},{"number":"API_ACCESS","name":"API access","type":"FEATURE"}]}',
    }),
  ];
  const templates = [
    template('T-TRIAL', 'TryAndBuy', 'Try & Buy module', {
      name: '14-day trial',
      licenseType: 'TIMEVOLUME',
      timeVolume: '14',
      timeVolumePeriod: 'DAY',
      automatic: 'true',
    }),
    template('T-FULL', 'TryAndBuy', 'Try & Buy module', { name: 'Full version', licenseType: 'FEATURE', price: '99.00' }),
    template('T-SUB-MONTH', 'Subscription', 'Subscription module', {
      name: 'Monthly subscription',
      licenseType: 'TIMEVOLUME',
      timeVolume: '1',
      timeVolumePeriod: 'MONTH',
      price: '9.90',
    }),
    template('T-RENT-INSTANCE', 'Rental', 'Rental module', { name: 'Rental instance', licenseType: 'FEATURE' }),
    template('T-RENT-30D', 'Rental', 'Rental module', {
      name: 'Rental 30 days',
      licenseType: 'TIMEVOLUME',
      timeVolume: '30',
      timeVolumePeriod: 'DAY',
      price: '5.00',
    }),
    template('T-FLOAT-5', 'Floating', 'Floating module', { name: '5 seats', licenseType: 'FLOATING', maxSessions: '5' }),
    template('T-FEATURE-EXPORT', 'MultiFeature', 'Multi-Feature module', { name: 'Export', licenseType: 'FEATURE' }),
    template('T-FEATURE-PRINT', 'MultiFeature', 'Multi-Feature module', { name: 'Print', licenseType: 'FEATURE' }),
    template('T-PPU-100', 'PayPerUse', 'Pay-per-Use module', { name: '100 credits', licenseType: 'QUANTITY', quantity: '100' }),
    template('T-QUOTA-50', 'Quota', 'Quota module', { name: 'Quota 50', licenseType: 'QUANTITY', quantity: '50' }),
    template('T-NODE-2', 'NodeLocked', 'Node-Locked module', { name: 'Two nodes', licenseType: 'QUANTITY', quota: '2' }),
    template('T-PLAN-BASIC', 'PricingTable', 'Pricing Table module', {
      name: 'Basic plan',
      licenseType: 'TIMEVOLUME',
      timeVolume: '1',
      timeVolumePeriod: 'MONTH',
      skus: '{"USERS":"10","API_ACCESS":true}',
    }),
  ];
  const licensees = [
    licensee('TryAndBuy'),
    licensee('Subscription', { aliases: '["sub-alias-1","sub-alias-2"]' }),
    licensee('Rental'),
    licensee('Floating'),
    licensee('MultiFeature'),
    licensee('PayPerUse'),
    licensee('Quota'),
    licensee('NodeLocked', {
      name: 'Kunde Müller GmbH',
      crmCustomerId: 'cust-ÄÖÜ-1',
      note: 'line 1\r\nline 2 & <tags> "quoted"',
    }),
    licensee('PricingTable'),
  ];
  const licenses = [
    license('LIC-TRIAL', 'TryAndBuy', 'T-TRIAL', {
      name: '14-day trial',
      startDate: '2026-01-10T08:00:00.000Z',
      timeVolume: '14',
      timeVolumePeriod: 'DAY',
    }),
    license('LIC-SUB', 'Subscription', 'T-SUB-MONTH', {
      name: 'Monthly subscription',
      price: '9.90',
      startDate: '2026-01-01T00:00:00.000Z',
      timeVolume: '1',
      timeVolumePeriod: 'MONTH',
      gracePeriod: 'false',
      orderId: 'ORD-2026-001',
    }),
    license('LIC-RENT-F', 'Rental', 'T-RENT-INSTANCE', { name: 'Rental instance' }),
    license('LIC-RENT-T', 'Rental', 'T-RENT-30D', {
      name: 'Rental 30 days',
      price: '5.00',
      parentfeature: 'LIC-RENT-F',
      startDate: '2026-01-05T00:00:00.000Z',
      timeVolume: '30',
      timeVolumePeriod: 'DAY',
    }),
    license('LIC-FLOAT', 'Floating', 'T-FLOAT-5', { name: '5 seats', maxSessions: '5' }),
    license('LIC-FEATURE-EXPORT', 'MultiFeature', 'T-FEATURE-EXPORT', { name: 'Export' }),
    license('LIC-FEATURE-PRINT', 'MultiFeature', 'T-FEATURE-PRINT', { name: 'Print', active: 'false' }),
    license('LIC-PPU', 'PayPerUse', 'T-PPU-100', { name: '100 credits', quantity: '100', usedQuantity: '0' }),
    license('LIC-QUOTA', 'Quota', 'T-QUOTA-50', { name: 'Quota 50', quantity: '50' }),
    license('LIC-NODE', 'NodeLocked', 'T-NODE-2', { name: 'Two nodes', quota: '2', nodeSecret0: 'node-secret-A' }),
    license('LIC-PLAN', 'PricingTable', 'T-PLAN-BASIC', {
      name: 'Basic plan',
      startDate: '2026-01-01T00:00:00.000Z',
      timeVolume: '1',
      timeVolumePeriod: 'MONTH',
    }),
  ];
  const other = [
    e('Product', { number: STANDIN_OTHER_PRODUCT, name: 'Other product', version: '1.0', licenseeAutoCreate: 'false' }),
    e('ProductModule', {
      number: 'M-OTHER',
      name: 'Other module',
      licensingModel: 'Subscription',
      productNumber: STANDIN_OTHER_PRODUCT,
    }),
    e('LicenseTemplate', {
      number: 'T-OTHER',
      name: 'Other subscription',
      licenseType: 'TIMEVOLUME',
      timeVolume: '1',
      timeVolumePeriod: 'YEAR',
      productModuleNumber: 'M-OTHER',
    }),
    e('Licensee', { number: STANDIN_OTHER_LICENSEE, productNumber: STANDIN_OTHER_PRODUCT }),
    e('License', {
      number: 'LIC-OTHER',
      licenseeNumber: STANDIN_OTHER_LICENSEE,
      licenseTemplateNumber: 'T-OTHER',
      startDate: '2026-01-01T00:00:00.000Z',
      timeVolume: '1',
      timeVolumePeriod: 'YEAR',
    }),
  ];
  const tokens = [
    token(STANDIN_API_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_ADMIN' }),
    token(STANDIN_LICENSEE_ROLE_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE' }),
    token(STANDIN_SCOPED_KEY, {
      tokenType: 'APIKEY',
      apiKeyRole: 'ROLE_APIKEY_LICENSEE',
      licenseeNumber: STANDIN_LICENSEES.Subscription,
    }),
    token(STANDIN_OTHER_SCOPED_KEY, {
      tokenType: 'APIKEY',
      apiKeyRole: 'ROLE_APIKEY_LICENSEE',
      licenseeNumber: STANDIN_OTHER_LICENSEE,
    }),
    token(STANDIN_SHOP_TOKEN, {
      tokenType: 'SHOP',
      licenseeNumber: STANDIN_LICENSEES.TryAndBuy,
      shopURL: `https://go.netlicensing.io/shop/v2/?shoptoken=${STANDIN_SHOP_TOKEN}`,
    }),
    token(STANDIN_DEFAULT_TOKEN, { tokenType: 'DEFAULT' }),
  ];
  // Interleave the products so that unfiltered pages mix both (the client must sort it out).
  return [product, other[0]!, ...modules, other[1]!, ...templates, other[2]!, ...licensees, other[3]!, ...licenses, other[4]!, ...tokens];
}

/** What a full export of all nine licensees must contain: the data set minus the other product and non-matching tokens. */
export function expectedExport(entities: Entity[] = standinDataSet()): Entity[] {
  const exported = new Set(Object.values(STANDIN_LICENSEES));
  return entities.filter((entity) => {
    switch (entity.kind) {
      case 'Product':
        return entity.number === STANDIN_PRODUCT;
      case 'ProductModule':
        return entity.props['productNumber'] === STANDIN_PRODUCT;
      case 'LicenseTemplate':
        return entity.props['productModuleNumber'] !== 'M-OTHER';
      case 'Licensee':
        return exported.has(entity.number);
      case 'License':
        return exported.has(entity.props['licenseeNumber'] ?? '');
      case 'Token': {
        const scope = entity.props['licenseeNumber'];
        return entity.props['tokenType'] === 'APIKEY' && (scope === undefined || exported.has(scope));
      }
    }
  });
}

// ---------------------------------------------------------------- server

const RESOURCES: Record<string, EntityKind> = RESOURCE_KIND;

export const PLAN_REFUSAL = 'Payment required. Feature "NetLicensing Agent" is not allowed. Please upgrade your plan.';

export interface RecordedRequest {
  method: string;
  /** Path as sent, still percent-encoded. */
  rawPath: string;
  /** Raw query string (without `?`). */
  rawQuery: string;
  /** Decoded `filter` parameter, if any. */
  filter?: string;
  authorization?: string;
  accept?: string;
}

export type Fault =
  | { kind: 'status'; status: number; id: string; message: string; headers?: Record<string, string> }
  | { kind: 'drop' }
  | { kind: 'slow'; delayMs: number }
  /** A plain-text (non-envelope) body with the given status, e.g. a proxy's error page. */
  | { kind: 'raw'; status: number; body: string; contentType?: string };

export interface FaultRule {
  fault: Fault;
  /** Applies to requests whose raw path + query matches; all when absent. */
  match?: RegExp;
  /** How many matching requests it affects; unlimited when absent. */
  times?: number;
  /** Applies only while this returns true (e.g. "until the client has retried twice"). */
  while?: () => boolean;
}

export interface StandinOptions {
  entities?: Entity[];
  /** Items per list page (default 2). */
  pageSize?: number;
  /** Status for an unknown entity (default 400 NotFoundException, as the cloud does). */
  notFoundStatus?: 400 | 404;
  /** Emit the 2016 JSON shape (`Signature`, `null` for empty collections). */
  legacyJson?: boolean;
  /** Serve HTTPS with this certificate. */
  tls?: { cert: string; key: string };
}

export interface StandinCloud {
  /** `http://127.0.0.1:<port>` (or https). */
  url: string;
  port: number;
  /** Mutable: tests may add or change entities between calls. */
  entities: Entity[];
  requests: RecordedRequest[];
  faults: FaultRule[];
  addFault(rule: FaultRule): void;
  stop(): Promise<void>;
}

interface JsonList {
  property: { value: string; name: string }[] | null;
  list: JsonList[] | null;
  name: string;
}

function jsonLists(lists: EntityList[] | undefined, legacy: boolean): JsonList[] | null {
  if (!lists || lists.length === 0) return legacy ? null : [];
  return lists.map((list) => ({
    property: Object.entries(list.props).map(([name, value]) => ({ value, name })),
    list: jsonLists(list.lists, legacy),
    name: list.name,
  }));
}

function envelopeBody(
  items: Entity[],
  infos: { id: string; type: string; value: string }[],
  paging: Record<string, string> | undefined,
  legacy: boolean,
): string {
  const pagingKeys = ['pagenumber', 'itemsnumber', 'totalpages', 'totalitems', 'hasnext'];
  const pagingJson = Object.fromEntries(pagingKeys.map((key) => [key, paging?.[key] ?? null]));
  const renderedItems = items.map((entity) => ({
    property: Object.entries(entity.props).map(([name, value]) => ({ value, name })),
    list: jsonLists(entity.lists, legacy),
    type: entity.kind,
  }));
  if (legacy) {
    return JSON.stringify({
      Signature: null,
      infos: { info: infos.length > 0 ? infos : null },
      items: items.length > 0 || paging ? { item: renderedItems.length > 0 ? renderedItems : null, ...pagingJson } : null,
      id: null,
      ttl: null,
    });
  }
  return JSON.stringify({
    signature: null,
    infos: { info: infos },
    items: { item: renderedItems, ...pagingJson },
    id: null,
    ttl: null,
  });
}

function decodeBasic(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The page number from a NetLicensing filter (`a=b;page=3;items=5`); everything else is ignored. */
function pageFrom(filter: string | undefined): number {
  for (const part of (filter ?? '').split(';')) {
    const [key, value] = part.split('=');
    if (key === 'page' && value !== undefined && /^\d+$/.test(value)) return Number(value);
  }
  return 0;
}

export async function startStandinCloud(options: StandinOptions = {}): Promise<StandinCloud> {
  const pageSize = options.pageSize ?? 2;
  const legacy = options.legacyJson ?? false;
  const state = {
    entities: options.entities ?? standinDataSet(),
    requests: [] as RecordedRequest[],
    faults: [] as FaultRule[],
  };

  const reply = (status: number, body: string, headers: Record<string, string> = {}) =>
    new Response(body, { status, headers: { 'content-type': 'application/json;charset=UTF-8', ...headers } });
  const errorReply = (status: number, id: string, message: string, headers: Record<string, string> = {}) =>
    reply(status, envelopeBody([], [{ id, type: 'ERROR', value: message }], undefined, legacy), headers);

  const authorised = (header: string | undefined): boolean => {
    const credentials = decodeBasic(header);
    if (!credentials) return false;
    if (credentials.user === 'apiKey') {
      return state.entities.some(
        (entity) =>
          entity.kind === 'Token' &&
          entity.number === credentials.password &&
          entity.props['tokenType'] === 'APIKEY' &&
          entity.props['apiKeyRole'] === 'ROLE_APIKEY_ADMIN',
      );
    }
    return credentials.user === STANDIN_VENDOR.username && credentials.password === STANDIN_VENDOR.password;
  };

  const faultFor = (target: string): Fault | undefined => {
    for (const rule of state.faults) {
      if (rule.times !== undefined && rule.times <= 0) continue;
      if (rule.match && !rule.match.test(target)) continue;
      if (rule.while && !rule.while()) continue;
      if (rule.times !== undefined) rule.times--;
      return rule.fault;
    }
    return undefined;
  };

  const app = new Hono();
  app.use('*', async (c, next) => {
    const url = new URL(c.req.url);
    const rawQuery = url.search.replace(/^\?/, '');
    const filter = c.req.query('filter');
    const recorded: RecordedRequest = { method: c.req.method, rawPath: url.pathname, rawQuery };
    if (filter !== undefined) recorded.filter = filter;
    const authorization = c.req.header('authorization');
    if (authorization !== undefined) recorded.authorization = authorization;
    const accept = c.req.header('accept');
    if (accept !== undefined) recorded.accept = accept;
    state.requests.push(recorded);

    const fault = faultFor(`${url.pathname}${url.search}`);
    if (fault?.kind === 'slow') await Bun.sleep(fault.delayMs);
    if (fault?.kind === 'status') return errorReply(fault.status, fault.id, fault.message, fault.headers);
    if (fault?.kind === 'raw') {
      return new Response(fault.body, { status: fault.status, headers: { 'content-type': fault.contentType ?? 'text/html' } });
    }
    if (!authorised(authorization)) {
      return errorReply(401, 'NotAuthorizedException', 'Bad credentials', {
        'www-authenticate': 'Basic realm="NetLicensing"',
      });
    }
    await next();
    if (fault?.kind === 'drop') {
      // Send the first part of the real answer, then break the connection.
      const body = await c.res.text();
      const half = new TextEncoder().encode(body.slice(0, Math.max(1, Math.floor(body.length / 2))));
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(half);
          // An error without a value makes Bun reset the connection without logging a stack trace.
          controller.error();
        },
      });
      c.res = new Response(stream, { status: 200, headers: { 'content-type': 'application/json;charset=UTF-8' } });
    }
  });

  const list = (c: Context, kind: EntityKind) => {
    const all = state.entities.filter((entity) => entity.kind === kind);
    const page = pageFrom(c.req.query('filter'));
    const totalPages = Math.ceil(all.length / pageSize);
    const items = all.slice(page * pageSize, page * pageSize + pageSize);
    return reply(
      200,
      envelopeBody(
        items,
        [],
        {
          pagenumber: String(page),
          itemsnumber: String(items.length),
          totalpages: String(totalPages),
          totalitems: String(all.length),
          hasnext: String(page + 1 < totalPages),
        },
        legacy,
      ),
    );
  };

  const get = (c: Context, kind: EntityKind, resource: string) => {
    const number = c.req.param('number') ?? '';
    const entity = state.entities.find((candidate) => candidate.kind === kind && candidate.number === number);
    if (!entity) {
      const label = resource === 'licensee' ? 'Licensee' : kind;
      return errorReply(options.notFoundStatus ?? 400, 'NotFoundException', `${label} with the number '${number}' does not exist.`);
    }
    return reply(200, envelopeBody([entity], [], undefined, legacy));
  };

  for (const [resource, kind] of Object.entries(RESOURCES)) {
    app.get(`/core/v2/rest/${resource}`, (c) => list(c, kind));
    app.get(`/core/v2/rest/${resource}/:number`, (c) => get(c, kind, resource));
  }
  app.all('*', (c) => errorReply(404, 'NotFoundException', `Resource ${new URL(c.req.url).pathname} not found`));

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: app.fetch,
    // The dropped-connection fault errors a response stream on purpose; keep the test log clean.
    error: () => new Response('stand-in error', { status: 500 }),
    ...(options.tls ? { tls: options.tls } : {}),
  });
  const port = server.port!;
  const cloud: StandinCloud = {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    get entities() {
      return state.entities;
    },
    set entities(value: Entity[]) {
      state.entities = value;
    },
    requests: state.requests,
    faults: state.faults,
    addFault(rule) {
      state.faults.push(rule);
    },
    async stop() {
      await server.stop(true);
    },
  };
  return cloud;
}
