/**
 * The transfer file (`{n}_netlicensing-assets.xml`) as values: what
 * export-assets writes and import-assets reads. The byte format is specified
 * in docs/transfer-format.md; the writer and the reader live in
 * src/transfer/writer.ts and src/importer/.
 */
import type { Entity } from '../core/entities.ts';

export interface TransferHeader {
  /** Unique id of this export (UUID); all files of one export share it. */
  exportId: string;
  /** ISO-8601 UTC time the export was made. */
  createdAt: string;
  /** The NetLicensing host (or agent) the assets were read from. */
  sourceHost: string;
  /** Smart card serial the export is bound to; undefined = exported --without-card. */
  cardSerial?: string;
  /** The licensee numbers requested for this export, in request order. */
  licensees: string[];
  /** Salted hash of the vendor's credentials for client authentication, when exported. */
  vendorCredentials?: { user: string; salt: string; hash: string };
}

export interface TransferWriteOptions {
  /** Directory the files are written into. */
  directory: string;
  /** Split so that no file grows beyond this many bytes (documented default in the writer). */
  maxFileBytes?: number;
  /** Overwrite existing `{n}_netlicensing-assets.xml` files (export --force). */
  overwrite?: boolean;
}

/**
 * Entities in the order the format requires: the Product, its ProductModules,
 * its LicenseTemplates, then each Licensee immediately followed by its
 * Licenses, then Tokens (API keys).
 */
export type TransferEntities = Iterable<Entity> | AsyncIterable<Entity>;

export interface TransferWriteResult {
  files: string[];
  entities: number;
  bytes: number;
}
