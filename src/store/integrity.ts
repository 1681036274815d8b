/**
 * The integrity check behind verify-database (AssetStore.checkIntegrity): reads every record of
 * every sub-database, decoding each, and checks the records' form and that the served
 * definitions refer to each other as imports leave them (parents, templates, indexes, aliases).
 * LMDB keeps no page checksums: a damaged page shows only when it is read, which this makes
 * happen. Damage that makes LMDB end the process (an assertion, a read past the file's end)
 * cannot be caught in-process: the CLI runs this in a child process (cli/crash-guard.ts).
 */
import { ENTITY_KINDS, PARENT_KIND, REQUIRED_PROPERTIES, type Entity, type EntityKind } from '../core/entities.ts';
import type { StoreMeta } from './asset-store.ts';
import { isDatabaseDamage } from './errors.ts';
import { entriesOfRecord, type JournalRecord } from './journal-records.ts';
import { GENERATION_KEY, generationNames, keyPart, parentOf, relKey, type Generation } from './layout.ts';
import type { KvDatabase, KvKey } from './lmdb.ts';
import { runtimeStateOf, type JournalHead, type RuntimeRecord } from './runtime-writer.ts';

/** What checkIntegrity found. */
export interface IntegrityReport {
  /** Every sub-database, read to its end or to where reading it failed, with the records read. */
  databases: { name: string; records: number }[];
  /** The served definitions, by kind. */
  definitions: Record<EntityKind, number>;
  /** Records LMDB could not read or that could not be decoded: the file is damaged. */
  unreadable: string[];
  /** Records that read well and do not fit together (form, references, indexes). */
  inconsistent: string[];
}

/** The sub-databases of an open store. */
export interface StoreRecords {
  meta: KvDatabase<unknown>;
  /** Definitions generations 0 and 1 (undefined: not in the file). */
  generations: (Generation | undefined)[];
  /** The served generation; the other (a leftover the next import clears) is read for damage only. */
  served: 0 | 1;
  runtime: KvDatabase<RuntimeRecord>;
  journal: KvDatabase<JournalRecord>;
}

/** Reads and checks every record (see the file's comment); reports at most `maxProblems` problems in all. */
export function checkIntegrity(records: StoreRecords, maxProblems = 20): IntegrityReport {
  const unreadable: string[] = [];
  const inconsistent: string[] = [];
  const problem = (text: string, list = inconsistent) => void (unreadable.length + inconsistent.length < maxProblems && list.push(text));
  const databases: IntegrityReport['databases'] = [];
  const definitions = Object.fromEntries(ENTITY_KINDS.map((kind) => [kind, 0])) as Record<EntityKind, number>;

  /** Reads every record of a sub-database; `check` throws what is wrong with one. */
  const readAll = <V>(name: string, db: KvDatabase<V>, check?: (key: KvKey, value: V) => void) => {
    let count = 0;
    const cursor = db.getRange({})[Symbol.iterator]();
    for (;;) {
      let next: IteratorResult<{ key: KvKey; value: V }>;
      try {
        next = cursor.next();
      } catch (error) {
        const what = isDatabaseDamage(error) ? 'damaged at' : 'cannot decode';
        problem(`sub-database ${name}: ${what} record ${count + 1} (${(error as Error).message})`, unreadable);
        break;
      }
      if (next.done === true) break;
      count++;
      try {
        check?.(next.value.key, next.value.value);
      } catch (error) {
        problem(`sub-database ${name}, record ${JSON.stringify(next.value.key).slice(0, 120)}: ${(error as Error).message}`);
      }
    }
    databases.push({ name, records: count });
  };

  readAll('meta', records.meta);
  try {
    const meta = records.meta.get('meta') as StoreMeta | undefined;
    if (typeof meta?.databaseId !== 'string' || typeof meta.schemaVersion !== 'number') problem('meta: the meta record has no database id or schema version');
    const head = records.meta.get('journalHead') as JournalHead | undefined;
    if (head !== undefined && (!Number.isSafeInteger(head.seq) || !/^[0-9a-f]{64}$/.test(String(head.hash)))) problem('meta: the journal head is not a sequence number and hash');
    if (![undefined, 0, 1].includes(records.meta.get(GENERATION_KEY) as number | undefined)) problem('meta: the served definitions generation is neither 0 nor 1');
  } catch (error) {
    problem(`meta: ${(error as Error).message}`, unreadable);
  }
  for (const g of [0, 1] as const) {
    const gen = records.generations[g];
    if (!gen) continue;
    const names = generationNames(g);
    const checks = g === records.served;
    for (const kind of ENTITY_KINDS) {
      readAll(names.def[kind], gen.def[kind], checks ? (key, entity) => checkDefinition(gen, kind, key, entity) : undefined);
      readAll(names.rel[kind], gen.rel[kind], checks ? (key, number) => checkIndexEntry(gen, kind, key, number) : undefined);
    }
    readAll(names.alias, gen.alias, checks ? (_key, number) => checkAlias(gen, number) : undefined);
  }
  readAll('runtime', records.runtime, (key, record) => {
    if (typeof record?.licenseeNumber !== 'string' || key !== keyPart(record.licenseeNumber)) throw new Error('not the runtime state of the licensee it is stored under');
    runtimeStateOf(record);
  });
  readAll('journal', records.journal, (key, record) => {
    if (entriesOfRecord(record)[0]?.seq !== key) throw new Error('its first entry does not have the sequence number it is stored under');
  });
  return { databases, definitions, unreadable, inconsistent };

  function checkDefinition(gen: Generation, kind: EntityKind, key: KvKey, entity: Entity) {
    if (entity?.kind !== kind || typeof entity.number !== 'string' || typeof entity.props !== 'object' || entity.props === null) {
      throw new Error(`not a ${kind} definition`);
    }
    if (key !== keyPart(entity.number)) throw new Error(`${kind} ${JSON.stringify(entity.number)} is stored under another number`);
    definitions[kind]++;
    const label = `${kind} ${JSON.stringify(entity.number)}`;
    for (const name of REQUIRED_PROPERTIES[kind]) if (!entity.props[name]) throw new Error(`${label} has no ${name}`);
    const parentKind = PARENT_KIND[kind];
    const parent = parentOf(entity);
    if (parentKind !== undefined && parent !== undefined) {
      if (!gen.def[parentKind].doesExist(keyPart(parent))) throw new Error(`${label}: its ${parentKind} ${JSON.stringify(parent)} is missing`);
      if (!gen.rel[kind].doesExist(relKey(parent, entity.number))) throw new Error(`${label} is missing from the index of its ${parentKind}'s children`);
    }
    const template = kind === 'License' ? entity.props['licenseTemplateNumber'] : undefined;
    if (template !== undefined && !gen.def.LicenseTemplate.doesExist(keyPart(template))) throw new Error(`${label}: its LicenseTemplate ${JSON.stringify(template)} is missing`);
  }

  function checkIndexEntry(gen: Generation, kind: EntityKind, key: KvKey, number: string) {
    const entity = typeof number === 'string' ? gen.def[kind].get(keyPart(number)) : undefined;
    if (entity === undefined) throw new Error(`names ${kind} ${JSON.stringify(number)}, which is missing`);
    const parent = parentOf(entity);
    if (parent === undefined || key !== relKey(parent, entity.number)) throw new Error(`${kind} ${JSON.stringify(number)} has another parent`);
  }

  function checkAlias(gen: Generation, number: string) {
    if (typeof number !== 'string' || !gen.def.Licensee.doesExist(keyPart(number))) throw new Error(`names licensee ${JSON.stringify(number)}, which is missing`);
  }
}
