import { extractPrompt } from "../../../gateway/src/utils/prompt";

describe("extractPrompt", () => {
  it("takes a user's string content", () => {
    expect(extractPrompt([{ role: "user", content: "Hello world" }])).toBe("Hello world");
  });

  it("joins several user turns with newlines and skips other roles", () => {
    expect(
      extractPrompt([
        { role: "system", content: "be brief" },
        { role: "user", content: "one" },
        { role: "assistant", content: "reply" },
        { role: "user", content: "two" },
      ]),
    ).toBe("one\ntwo");
  });

  it("takes the text parts of array content and ignores images", () => {
    expect(
      extractPrompt([
        {
          role: "user",
          content: [
            { type: "text", text: "look" },
            { type: "image_url", image_url: { url: "data:," } },
            { type: "text", text: "here" },
          ],
        },
      ]),
    ).toBe("look\nhere");
  });

  it("is empty when there is no user text", () => {
    expect(
      extractPrompt([
        { role: "system", content: "x" },
        { role: "user", content: null },
      ]),
    ).toBe("");
  });
});
