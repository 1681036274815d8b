/**
 * Why an import was refused, as error classes the CLI maps to exit codes
 * (src/cli/actions/import-assets.ts): bad input → EXIT.input, conflicts with
 * the database → EXIT.conflict, card binding → EXIT.card.
 */
import type { EntityKind } from '../core/entities.ts';

/** A transfer file is unreadable, malformed, truncated or altered. `line` 0 = the file as a whole. */
export class TransferInputError extends Error {
  override name = 'TransferInputError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    readonly reason: string,
  ) {
    super(line > 0 ? `${file}:${line}:${column}: ${reason}` : `${file}: ${reason}`);
  }
}

/** One difference between the export and the database that --force would override. */
export interface ImportConflict {
  /** The entity kind, or 'Database' for the card binding. */
  kind: EntityKind | 'Database';
  number: string;
  reason: string;
  /** file:line:column of the item, or '' for the card binding. */
  where: string;
}

export function describeConflict(conflict: ImportConflict): string {
  const subject = conflict.kind === 'Database' ? 'database' : `${conflict.kind} "${conflict.number}"`;
  return `${subject}${conflict.where ? ` (${conflict.where})` : ''}: ${conflict.reason}`;
}

export class ImportConflictError extends Error {
  override name = 'ImportConflictError';
  constructor(
    /** The first conflicts found (at most MAX_REPORTED_CONFLICTS). */
    readonly conflicts: ImportConflict[],
    readonly total: number,
  ) {
    const more = total > conflicts.length ? `\n  … and ${total - conflicts.length} more` : '';
    super(
      `import refused: ${total} conflict${total === 1 ? '' : 's'} with the database ` +
        `(nothing was changed; --force imports anyway):\n${conflicts.map((c) => `  ${describeConflict(c)}`).join('\n')}${more}`,
    );
  }
}

/** The export is bound to a smart card, and the import was given no card (or another one). */
export class ImportCardError extends Error {
  override name = 'ImportCardError';
}

export const MAX_REPORTED_CONFLICTS = 20;
