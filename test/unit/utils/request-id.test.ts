import { requestIdFrom } from "../../../gateway/src/utils/request-id";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("requestIdFrom", () => {
  it("keeps a safe client id", () => {
    expect(requestIdFrom("req_abc-123.x:y")).toBe("req_abc-123.x:y");
  });

  it.each([[undefined], [""], ["has space"], ["x".repeat(129)], ["a\r\nset-cookie: x"], ["ünïcode"]])(
    "replaces %p with a new UUID",
    (incoming) => {
      expect(requestIdFrom(incoming)).toMatch(UUID);
    },
  );

  it("makes a different id each time", () => {
    expect(requestIdFrom(undefined)).not.toBe(requestIdFrom(undefined));
  });
});
