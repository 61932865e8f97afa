import { scanChatChunk } from "../../../../gateway/src/backends/http/chunk-scan";
import { parseStreamEvent, parseStreamEventJson } from "../../../../gateway/src/backends/http/wire";

/** What the JSON path makes of `text` (or that it threw), as text: key order included. */
function viaJson(text: string): string | undefined {
  try {
    return JSON.stringify(parseStreamEventJson(undefined, text, "remote"));
  } catch (error) {
    return `threw ${String(error)}`;
  }
}

// Chunks as servers send them: OpenAI (with its extra fields), vLLM, llama.cpp (choices first), Ollama.
const COMMON = [
  '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764300000,"model":"gpt-4o","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x1"}',
  '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764300000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}],"usage":null}',
  '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764300000,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}',
  '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764300000,"model":"gpt-4o","choices":[],"usage":null}',
  '{"id":"cmpl-2","object":"chat.completion.chunk","created":1764300000,"model":"Qwen/Qwen2.5-7B","choices":[{"index":0,"delta":{"content":"Bonjour, ça va ? 你好 🙂"},"logprobs":null,"finish_reason":null}]}',
  '{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hi"}}],"created":1764300000,"id":"chatcmpl-3","model":"llama","system_fingerprint":"b1-abc","object":"chat.completion.chunk"}',
  '{"id":"chatcmpl-4","object":"chat.completion.chunk","created":1764300000,"model":"llama3","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}',
  '{"id":"x","choices":[{"index":1,"delta":{"content":"second choice"},"finish_reason":null}]}',
  '{"id":"x","choices":[{"index":2,"delta":{"content":"a","role":"assistant"},"finish_reason":"length"}]}',
  '{"id":"x","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":""}]}',
  '{"id":"x","created":-1.5e+3,"choices":[{"delta":{"content":"no index"}}],"n":0,"ok":true,"no":false,"z":null}',
  '{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"choices":[{"index":0,"delta":{"content":"y"}}]}',
  '{"choices":[{}]}',
];

/** One of `list`, chosen by `random`. */
function pick(list: readonly string[], random: (below: number) => number): string {
  const item = list[random(list.length)];
  if (item === undefined) throw new Error("empty list");
  return item;
}

describe("scanChatChunk", () => {
  it.each(COMMON)("reads a common chunk as JSON.parse does: %s", (text) => {
    const scanned = scanChatChunk(text);
    expect(scanned).not.toBeNull();
    expect(JSON.stringify(scanned)).toBe(viaJson(text));
    expect(parseStreamEvent(undefined, text, "remote")).toEqual(scanned);
  });

  it.each([
    ["an escape in a string", '{"choices":[{"index":0,"delta":{"content":"line\\nbreak"}}]}'],
    ["whitespace", '{"choices": [{"index":0,"delta":{"content":"x"}}]}'],
    ["whitespace at the end", '{"choices":[{"index":0,"delta":{"content":"x"}}]} '],
    ["tool calls", '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}'],
    ["a null content", '{"choices":[{"index":0,"delta":{"content":null}}]}'],
    ["a usage object", '{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'],
    ["two choices", '{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}'],
    ["logprobs", '{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}'],
    ["an error field", '{"error":{"message":"boom"},"choices":[]}'],
    ["a type field", '{"type":"error","choices":[]}'],
    ["no choices", '{"id":"x"}'],
    ["an empty object", "{}"],
    ["a raw control character in a string", '{"id":"a\tb","choices":[]}'],
    ["a number with a leading zero", '{"created":0123,"choices":[]}'],
    ["a choice index past the most choices", '{"choices":[{"index":128,"delta":{"content":"a"}}]}'],
    ["a fractional index", '{"choices":[{"index":1.0,"delta":{"content":"a"}}]}'],
    ["a repeated content", '{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}'],
    ["text after the object", '{"choices":[]}{}'],
    ["not JSON", "data: nope"],
    ["a cut chunk", '{"choices":[{"index":0,"delta":{"content":"a'],
  ])("declines %s (the JSON path reads it)", (_case, text) => {
    expect(scanChatChunk(text)).toBeNull();
  });

  it("never reads a text otherwise than the JSON path, over thousands of damaged chunks", () => {
    // A fixed seed: the same texts on every run.
    let seed = 0x5eed;
    const random = (below: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % below;
    };
    const pieces = ['"', "\\", "{", "}", "[", "]", ":", ",", " ", "\t", "0", "7", "-", ".", "e", "n", "null", '"x":1,'];
    let read = 0;
    let declined = 0;
    for (let round = 0; round < 6000; round++) {
      let text = pick(COMMON, random);
      for (let edits = 1 + random(3); edits > 0; edits--) {
        const at = random(text.length + 1);
        const piece = pick(pieces, random);
        const kind = random(3);
        if (kind === 0) text = text.slice(0, at) + text.slice(at + 1);
        else if (kind === 1) text = text.slice(0, at) + piece + text.slice(at);
        else text = text.slice(0, at) + piece + text.slice(at + piece.length);
      }
      const scanned = scanChatChunk(text);
      if (scanned === null) {
        declined++;
        continue;
      }
      read++;
      // Read: the text is JSON, and its event the JSON path's, field for field and in the same key order.
      expect(JSON.stringify(scanned)).toBe(viaJson(text));
    }
    // Both ways were taken often enough for the comparison to mean something.
    expect(read).toBeGreaterThan(300);
    expect(declined).toBeGreaterThan(3000);
  });
});
