/**
 * Puts String.prototype back in V8's fast mode after a dependency left it in dictionary mode.
 *
 * A class that extends a built-in makes V8 set the parent's prototype up as a prototype ("setup mode", in
 * dictionary mode) until an inline cache loads a property through it from an object. ioredis's RESP3 decoder
 * declares `class VerbatimString extends String` when it is loaded, and nothing then loads through
 * String.prototype from an object: method calls on primitive strings do not turn it back. Until something
 * does, optimised code cannot inline `text.charCodeAt(i)` or `text.startsWith(…)`: each became a generic
 * property lookup, and the stream chunk scanner (backends/http/chunk-scan.ts) ran 4x slower in a process
 * that had loaded ioredis (bench/README.md). Loads through an object that inherits from String.prototype,
 * from a function warm enough to have its inline caches, make V8 turn it fast again. Harmless when it is.
 */
export function restoreFastStringPrototype(): void {
  const heir = Object.create(String.prototype) as object;
  // V8 gives a function its inline caches after a few calls: the later calls are the ones that count.
  for (let call = 0; call < 32; call++) loadThrough(heir);
}

/** A load that starts at an object and finds its property on that object's prototype. */
function loadThrough(heir: object): unknown {
  return (heir as { readonly charCodeAt?: unknown }).charCodeAt;
}
