/**
 * How stored entities look on the wire (GET calls), and how the agent's
 * runtime changes show in them, as the cloud would show its own: a start
 * date the agent set, the used quantity including local use, and licenses
 * the agent created (trial starts). Pure.
 *
 * Floating sessions and registered node secrets are not shown as license
 * properties: they are local to this agent (see docs/semantics.md).
 */
import type { Entity, EntityList } from './entities.ts';
import type { WireItem, WireList } from './envelope.ts';
import type { RuntimeState } from './runtime.ts';

function toWireList(list: EntityList): WireList {
  return {
    name: list.name,
    properties: Object.entries(list.props),
    lists: (list.lists ?? []).map(toWireList),
  };
}

export function entityItem(entity: Entity): WireItem {
  return {
    type: entity.kind,
    properties: Object.entries(entity.props),
    lists: (entity.lists ?? []).map(toWireList),
  };
}

/** Template properties a license created from it copies (as the cloud does on license creation). */
const COPIED_FROM_TEMPLATE = ['name', 'price', 'currency', 'hidden', 'timeVolume', 'timeVolumePeriod'] as const;

/**
 * The licensee's licenses with the agent's runtime changes applied.
 * `templateOf` resolves a template number (for licenses the agent created).
 */
export function effectiveLicenses(
  licenseeNumber: string,
  imported: readonly Entity[],
  runtime: RuntimeState,
  templateOf: (number: string) => Entity | undefined,
): Entity[] {
  const out = imported.map((license) => applyRuntimeToLicense(license, runtime));
  for (const created of Object.values(runtime.createdLicenses)) {
    const template = templateOf(created.templateNumber);
    const props: Record<string, string> = { number: created.number, active: 'true' };
    for (const name of COPIED_FROM_TEMPLATE) {
      const value = template?.props[name];
      if (value !== undefined) props[name] = value;
    }
    props['licenseeNumber'] = licenseeNumber;
    props['licenseTemplateNumber'] = created.templateNumber;
    props['startDate'] = created.startDate;
    out.push({ kind: 'License', number: created.number, props });
  }
  return out;
}

export function applyRuntimeToLicense(license: Entity, runtime: RuntimeState): Entity {
  const startDate = runtime.startDates[license.number];
  const used = runtime.usedQuantity[license.number];
  if ((startDate === undefined || license.props['startDate'] !== undefined) && used === undefined) return license;
  const props = { ...license.props };
  if (startDate !== undefined && props['startDate'] === undefined) props['startDate'] = startDate;
  if (used !== undefined) props['usedQuantity'] = String((Number.parseInt(props['usedQuantity'] ?? '0', 10) || 0) + used);
  return { ...license, props };
}
