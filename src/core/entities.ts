/**
 * The NetLicensing entity model as the agent stores it.
 *
 * Every entity is a bag of string properties, exactly as the cloud sends them
 * (`number`, `active`, standard and custom properties alike), plus optional
 * named lists (the cloud uses lists for e.g. product discounts). Keeping the
 * cloud's own representation means nothing a vendor defined is lost on the
 * way through export → import → GET, and custom properties need no schema.
 *
 * Relations are derived from properties, never stored twice:
 *   ProductModule.productNumber, LicenseTemplate.productModuleNumber,
 *   Licensee.productNumber, License.licenseeNumber / licenseTemplateNumber,
 *   Token.licenseeNumber (API keys scoped to one licensee).
 */

export const ENTITY_KINDS = [
  'Product',
  'ProductModule',
  'LicenseTemplate',
  'Licensee',
  'License',
  'Token',
] as const;
export type EntityKind = (typeof ENTITY_KINDS)[number];

export function isEntityKind(value: string): value is EntityKind {
  return (ENTITY_KINDS as readonly string[]).includes(value);
}

/** A named list inside an item (`<list name="…">`), one level of nesting kept. */
export interface EntityList {
  name: string;
  props: Record<string, string>;
  lists?: EntityList[];
}

export interface Entity {
  kind: EntityKind;
  number: string;
  /** All properties, including `number` and `active`, values as the cloud wrote them. */
  props: Record<string, string>;
  lists?: EntityList[];
}

/** The cloud's REST resource name of each kind (`/core/v2/rest/<resource>`). */
export const RESOURCE_KIND = {
  product: 'Product',
  productmodule: 'ProductModule',
  licensetemplate: 'LicenseTemplate',
  licensee: 'Licensee',
  license: 'License',
  token: 'Token',
} as const satisfies Record<string, EntityKind>;
export type RestResource = keyof typeof RESOURCE_KIND;

/** The property each kind uses to point at its parent (undefined for Product). */
export const PARENT_PROPERTY: Record<EntityKind, string | undefined> = {
  Product: undefined,
  ProductModule: 'productNumber',
  LicenseTemplate: 'productModuleNumber',
  Licensee: 'productNumber',
  License: 'licenseeNumber',
  Token: 'licenseeNumber',
};

/** The kind of entity the parent property (PARENT_PROPERTY) of each kind names. */
export const PARENT_KIND: Record<EntityKind, EntityKind | undefined> = {
  Product: undefined,
  ProductModule: 'Product',
  LicenseTemplate: 'ProductModule',
  Licensee: 'Product',
  License: 'Licensee',
  Token: 'Licensee',
};

/** Properties that must be present (besides `number`) for an entity to be usable. */
export const REQUIRED_PROPERTIES: Record<EntityKind, readonly string[]> = {
  Product: [],
  ProductModule: ['productNumber', 'licensingModel'],
  LicenseTemplate: ['productModuleNumber', 'licenseType'],
  Licensee: ['productNumber'],
  License: ['licenseeNumber', 'licenseTemplateNumber'],
  Token: ['tokenType'],
};

/** `active` defaults to true when absent, as the cloud creates entities active. */
export function isActive(entity: Entity): boolean {
  return entity.props['active'] !== 'false';
}

export function prop(entity: Entity, name: string): string | undefined {
  return entity.props[name];
}

export function boolProp(entity: Entity, name: string, fallback = false): boolean {
  const value = entity.props[name];
  if (value === undefined) return fallback;
  return value === 'true';
}

/** Integer property; undefined when absent or not an integer. */
export function intProp(entity: Entity, name: string): number | undefined {
  const value = entity.props[name];
  if (value === undefined || !/^\s*-?\d+\s*$/.test(value)) return undefined;
  return Number.parseInt(value, 10);
}

/** The original agent forbids these characters in exported numbers (seed manual). */
export const FORBIDDEN_NUMBER_CHARACTERS = /[,;]/;
