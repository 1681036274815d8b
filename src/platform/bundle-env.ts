/**
 * Imported first by main.ts, before anything can load lmdb/msgpackr.
 * msgpackr's optional native string extractor does not survive
 * `bun build --compile` (it loads as an object without `extractStrings`), so
 * the pure-JS decoder is used everywhere — in development too, so that the
 * tested code path is the shipped one.
 */
process.env['MSGPACKR_NATIVE_ACCELERATION_DISABLED'] ??= 'true';
