/**
 * Puts String.prototype back in V8's fast mode after a dependency left it in dictionary mode.
 *
 * A class that extends a built-in makes V8 set the parent's prototype up as a prototype ("setup mode", in
 * dictionary mode) until an inline cache loads a property through it from an object. ioredis's RESP3 decoder
 * declares `class VerbatimString extends String` when it is loaded, and nothing then loads through
 * String.prototype from an object: method calls on primitive strings do not turn it back. Until they do,
 * optimised code cannot inline `text.charCodeAt(i)` or `text.startsWith(…)`: each became a generic property
 * lookup, and the stream chunk scanner (backends/http/chunk-scan.ts) ran 4x slower in a process that had
 * loaded ioredis (bench/README.md). Loads through a String wrapper object, from a function warm enough to
 * have its inline caches, make V8 turn the prototype fast again. Idempotent, and harmless when it is fast.
 */
export function restoreFastStringPrototype(): void {
  const wrapper: object = Object("");
  // V8 gives a function its inline caches after a few calls: the later calls are the ones that count.
  for (let call = 0; call < 32; call++) loadThrough(wrapper);
}

function loadThrough(wrapper: object): unknown {
  return (wrapper as { readonly charCodeAt?: unknown }).charCodeAt;
}
