/**
 * How stored entities look on the wire (GET calls), and how the agent's
 * runtime changes show in them, as the cloud would show its own: a start
 * date the agent set, the used quantity including local use, licenses the
 * agent created (trial starts), and the node secrets it registered. Pure.
 *
 * Floating sessions are not shown as license properties: they are local to
 * this agent and short-lived (see docs/semantics.md).
 */
import { isActive, type Entity, type EntityList } from './entities.ts';
import type { WireItem, WireList } from './envelope.ts';
import { licenseValue, parseInteger, templateType } from './models/common.ts';
import { NODE_SECRET_PROPERTY } from './models/node-locked.ts';
import { ownEntry, type RuntimeState } from './runtime.ts';

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
  const out = withRegisteredNodeSecrets(
    imported.map((license) => applyRuntimeToLicense(license, runtime)),
    runtime,
    templateOf,
  );
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
  const startDate = ownEntry(runtime.startDates, license.number);
  const used = ownEntry(runtime.usedQuantity, license.number);
  if ((startDate === undefined || license.props['startDate'] !== undefined) && used === undefined) return license;
  const props = { ...license.props };
  if (startDate !== undefined && props['startDate'] === undefined) props['startDate'] = startDate;
  if (used !== undefined) props['usedQuantity'] = String((Number.parseInt(props['usedQuantity'] ?? '0', 10) || 0) + used);
  return { ...license, props };
}

/** The highest `nodeSecret<i>` index that registered secrets are placed after (2^32 − 1). */
const MAX_PLACED_SLOT_INDEX = 2 ** 32 - 1;

/**
 * The node secrets the agent registered (Node-Locked, CLIENT mode), shown where the cloud keeps
 * them: `nodeSecret<i>` properties of the module's licenses (API spec §3.6). Each goes into the
 * first free slot (index 0 .. quota-1 without a secret) of the module's active QUANTITY licenses,
 * in their order; one that finds none (the quota was lowered since) follows the highest index of
 * the last of them. A secret a license already holds is not repeated. So an export made from this
 * agent (a hub's) carries them, and the next agent counts them against the quota as the model
 * does here (models/node-locked.ts: stored = licenses' secrets ∪ registered).
 */
function withRegisteredNodeSecrets(licenses: Entity[], runtime: RuntimeState, templateOf: (number: string) => Entity | undefined): Entity[] {
  const modules = Object.keys(runtime.nodeSecrets);
  if (modules.length === 0) return licenses;
  const out = [...licenses];
  for (const moduleNumber of modules) {
    // `next`: no free index below it; `maxUsed`: the highest index used (-1: none). Indexes are only
    // ever added, so the first free one only moves on: searching from 0 for every secret made a
    // license read O(secrets²) (0.75 s with 20,000 registered).
    const slots: { index: number; used: Set<number>; quota: number; next: number; maxUsed: number }[] = [];
    const held = new Set<string>();
    for (let index = 0; index < out.length; index++) {
      const license = out[index]!;
      const template = templateOf(license.props['licenseTemplateNumber'] ?? '');
      if (template === undefined || template.props['productModuleNumber'] !== moduleNumber) continue;
      if (templateType(template) !== 'QUANTITY' || !isActive(license)) continue;
      const used = new Set<number>();
      let maxUsed = -1;
      for (const name in license.props) {
        const match = NODE_SECRET_PROPERTY.exec(name);
        const value = license.props[name]!;
        if (match === null || value === '') continue;
        held.add(value);
        // An index past 2^32 (nodeSecret9999999999999999999999) holds its secret but places none
        // after it: max + 1 was written nodeSecret1e+22 (which no reader counts as a secret), and
        // past 2^53 it equals max and overwrote a secret.
        const at = Number(match[1]);
        if (at > MAX_PLACED_SLOT_INDEX) continue;
        used.add(at);
        maxUsed = Math.max(maxUsed, at);
      }
      const quota = parseInteger(licenseValue({ props: license.props, template }, 'quota')) ?? 0;
      slots.push({ index, used, quota, next: 0, maxUsed });
    }
    if (slots.length === 0) continue;
    const added = new Map<number, Record<string, string>>();
    const place = (slot: (typeof slots)[number], secret: string, at: number) => {
      slot.used.add(at);
      slot.maxUsed = Math.max(slot.maxUsed, at);
      let props = added.get(slot.index);
      if (props === undefined) added.set(slot.index, (props = { ...out[slot.index]!.props }));
      props[`nodeSecret${at}`] = secret;
    };
    // Slots before this one are full.
    let firstOpen = 0;
    const placeInFirstFreeSlot = (secret: string) => {
      for (; firstOpen < slots.length; firstOpen++) {
        const slot = slots[firstOpen]!;
        while (slot.next < slot.quota && slot.used.has(slot.next)) slot.next++;
        if (slot.next < slot.quota) return place(slot, secret, slot.next);
      }
      const last = slots[slots.length - 1]!;
      place(last, secret, Math.max(last.quota - 1, last.maxUsed) + 1);
    };
    for (const secret of ownEntry(runtime.nodeSecrets, moduleNumber)!) {
      if (held.has(secret)) continue;
      held.add(secret);
      placeInFirstFreeSlot(secret);
    }
    for (const [index, props] of added) out[index] = { ...out[index]!, props };
  }
  return out;
}
