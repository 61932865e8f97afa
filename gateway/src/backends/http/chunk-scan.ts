import type { StreamEvent } from "../backend";
import { MAX_CHOICES } from "../../schemas/chat";

/**
 * The common chat chunk, read without JSON.parse: `{"id":…,"object":…,"model":…,"choices":[{"index":0,
 * "delta":{"content":"…"},"finish_reason":null}]}` as OpenAI, vLLM, llama.cpp and Ollama send it, one choice,
 * no whitespace, plain strings. JSON.parse built five objects and interned their keys for each chunk, only for
 * the relay to read three fields (~1.5 µs of a relayed chunk's CPU at 1000 open streams: bench/README.md).
 *
 * It only accepts what it fully checks: the whole text is JSON of that shape, top to bottom, and then the
 * event is the one `parseStreamEventJson` makes of it (same fields, same delta key order). Anything else
 * (whitespace, an escape in a string, a usage object, tool calls, several choices, an `error` or `type` field,
 * text that is not JSON) is declined with `null`, and the caller parses it whole, errors and all.
 */
export function scanChatChunk(text: string): StreamEvent | undefined | null {
  const end = text.length;
  if (text.charCodeAt(0) !== LEFT_BRACE) return null;
  let at = 1;
  let hasChoices = false;
  let event: StreamEvent | undefined;
  for (;;) {
    const valueAt = memberValue(text, at);
    if (valueAt === -1) return null;
    const keyLength = valueAt - at - 3;
    if (keyLength === 7 && text.startsWith("choices", at + 1)) {
      hasChoices = true;
      if (text.charCodeAt(valueAt) !== LEFT_BRACKET) return null;
      if (text.charCodeAt(valueAt + 1) === RIGHT_BRACKET) {
        event = undefined;
        at = valueAt + 2;
      } else {
        at = scanChoice(text, valueAt + 1);
        if (at === -1 || text.charCodeAt(at) !== RIGHT_BRACKET) return null;
        event = scanned;
        at++;
      }
    } else if (keyLength === 5 && text.startsWith("usage", at + 1)) {
      // Usage comes once per stream, as an object: read whole. `null` (on every chunk, from some servers) is none.
      if (!text.startsWith("null", valueAt)) return null;
      at = valueAt + 4;
    } else if (
      (keyLength === 5 && text.startsWith("error", at + 1)) ||
      (keyLength === 4 && text.startsWith("type", at + 1))
    ) {
      return null;
    } else {
      at = scalarEnd(text, valueAt);
      if (at === -1) return null;
    }
    const next = text.charCodeAt(at);
    if (next === COMMA) at++;
    else if (next === RIGHT_BRACE && at + 1 === end && hasChoices) return event;
    else return null;
  }
}

/** What scanChoice read (one event per scan, taken at once: no object per call for a second result). */
let scanned: StreamEvent | undefined;

/**
 * One choice object from `at` (its opening brace); where it ends (after its closing brace), or -1 to decline.
 * Sets `scanned` to its event, or undefined when it adds nothing (as the JSON path reads it).
 */
function scanChoice(text: string, at: number): number {
  if (text.charCodeAt(at) !== LEFT_BRACE) return -1;
  at++;
  let delta: Readonly<Record<string, unknown>> | undefined;
  let finishReason: string | undefined;
  let index = 0;
  if (text.charCodeAt(at) !== RIGHT_BRACE) {
    for (;;) {
      const valueAt = memberValue(text, at);
      if (valueAt === -1) return -1;
      const keyLength = valueAt - at - 3;
      if (keyLength === 5 && text.startsWith("delta", at + 1)) {
        at = scanDelta(text, valueAt);
        if (at === -1) return -1;
        delta = scannedDelta;
      } else if (keyLength === 5 && text.startsWith("index", at + 1)) {
        // A choice index: a small non-negative integer, digits only.
        at = valueAt;
        index = 0;
        const first = text.charCodeAt(at);
        if (first < DIGIT_0 || first > DIGIT_9) return -1;
        do {
          index = index * 10 + text.charCodeAt(at) - DIGIT_0;
          at++;
        } while (at - valueAt < 4 && isDigit(text.charCodeAt(at)));
        if ((first === DIGIT_0 && at - valueAt > 1) || index >= MAX_CHOICES || isNumberPart(text.charCodeAt(at)))
          return -1;
      } else if (keyLength === 13 && text.startsWith("finish_reason", at + 1)) {
        if (text.startsWith("null", valueAt)) {
          finishReason = undefined;
          at = valueAt + 4;
        } else {
          const reasonEnd = stringEnd(text, valueAt);
          if (reasonEnd === -1) return -1;
          finishReason = reasonEnd === valueAt + 1 ? undefined : text.slice(valueAt + 1, reasonEnd);
          at = reasonEnd + 1;
        }
      } else {
        // Anything else of a choice (`logprobs: null`, a server's own scalar fields) is not relayed; a value
        // with structure (logprobs given) is read whole.
        at = scalarEnd(text, valueAt);
        if (at === -1) return -1;
      }
      const next = text.charCodeAt(at);
      if (next === RIGHT_BRACE) break;
      if (next !== COMMA) return -1;
      at++;
    }
  }
  scanned =
    delta === undefined && finishReason === undefined
      ? undefined
      : { delta, finishReason, usage: undefined, index: index === 0 ? undefined : index, also: undefined };
  return at + 1;
}

/** What scanDelta read: the delta as JSON.parse would make it (its keys in the order sent), or undefined for `{}`. */
let scannedDelta: Readonly<Record<string, unknown>> | undefined;

/** A delta of `content` and/or `role` strings, from `at` (its opening brace); where it ends, or -1 to decline. */
function scanDelta(text: string, at: number): number {
  if (text.charCodeAt(at) !== LEFT_BRACE) return -1;
  at++;
  let content: string | undefined;
  let role: string | undefined;
  let roleFirst = false;
  if (text.charCodeAt(at) !== RIGHT_BRACE) {
    for (;;) {
      const valueAt = memberValue(text, at);
      if (valueAt === -1) return -1;
      const keyLength = valueAt - at - 3;
      const valueEnd = stringEnd(text, valueAt);
      if (valueEnd === -1) return -1;
      // A repeated key: JSON.parse keeps the last value at the first one's place; not worth copying here.
      if (keyLength === 7 && text.startsWith("content", at + 1) && content === undefined)
        content = text.slice(valueAt + 1, valueEnd);
      else if (keyLength === 4 && text.startsWith("role", at + 1) && role === undefined) {
        role = text.slice(valueAt + 1, valueEnd);
        roleFirst = content === undefined;
      } else return -1;
      at = valueEnd + 1;
      const next = text.charCodeAt(at);
      if (next === RIGHT_BRACE) break;
      if (next !== COMMA) return -1;
      at++;
    }
  }
  if (role === undefined) scannedDelta = content === undefined ? undefined : { content };
  else if (content === undefined) scannedDelta = { role };
  else scannedDelta = roleFirst ? { role, content } : { content, role };
  return at + 1;
}

/** Where the value of the object member whose key opens at `at` starts (past `"key":`), or -1 if there is none. */
function memberValue(text: string, at: number): number {
  const keyEnd = stringEnd(text, at);
  return keyEnd === -1 || text.charCodeAt(keyEnd + 1) !== COLON ? -1 : keyEnd + 2;
}

/**
 * Where the JSON string opening at `at` ends (its closing quote), or -1: no string there, or one with an
 * escape (its value needs decoding: JSON.parse does that) or a raw control character (not JSON).
 */
function stringEnd(text: string, at: number): number {
  if (text.charCodeAt(at) !== QUOTE) return -1;
  for (let i = at + 1; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) return i;
    if (code === BACKSLASH || code < SPACE) return -1;
  }
  return -1;
}

/** Where a JSON string, number, `true`, `false` or `null` opening at `at` ends, or -1 (or for anything else). */
function scalarEnd(text: string, at: number): number {
  const code = text.charCodeAt(at);
  if (code === QUOTE) {
    const end = stringEnd(text, at);
    return end === -1 ? -1 : end + 1;
  }
  if (code === MINUS || isDigit(code)) return numberEnd(text, at);
  if (text.startsWith("null", at) || text.startsWith("true", at)) return at + 4;
  if (text.startsWith("false", at)) return at + 5;
  return -1;
}

/** Where the JSON number at `at` ends: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; -1 if it is not one. */
function numberEnd(text: string, at: number): number {
  if (text.charCodeAt(at) === MINUS) at++;
  if (text.charCodeAt(at) === DIGIT_0) at++;
  else if (isDigit(text.charCodeAt(at))) while (isDigit(text.charCodeAt(at))) at++;
  else return -1;
  if (text.charCodeAt(at) === DOT) {
    at++;
    if (!isDigit(text.charCodeAt(at))) return -1;
    while (isDigit(text.charCodeAt(at))) at++;
  }
  const exponent = text.charCodeAt(at);
  if (exponent === LOWER_E || exponent === UPPER_E) {
    at++;
    const sign = text.charCodeAt(at);
    if (sign === PLUS || sign === MINUS) at++;
    if (!isDigit(text.charCodeAt(at))) return -1;
    while (isDigit(text.charCodeAt(at))) at++;
  }
  return at;
}

function isDigit(code: number): boolean {
  return code >= DIGIT_0 && code <= DIGIT_9;
}

/** A character that would continue a number (a digit, fraction or exponent) past an integer. */
function isNumberPart(code: number): boolean {
  return isDigit(code) || code === DOT || code === LOWER_E || code === UPPER_E;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const COLON = 0x3a;
const COMMA = 0x2c;
const LEFT_BRACE = 0x7b;
const RIGHT_BRACE = 0x7d;
const LEFT_BRACKET = 0x5b;
const RIGHT_BRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
