// The npm client ships no types; tests use it as an untyped, unmodified real client.
declare module 'netlicensing-client';
