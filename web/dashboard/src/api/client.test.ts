import { describe, expect, it } from "vitest";
import { ApiError, call } from "./client";

const answer = (status: number, body: unknown) =>
  Promise.resolve({
    data: status < 400 ? body : undefined,
    error: status >= 400 ? body : undefined,
    response: new Response(null, { status }),
  });

describe("call", () => {
  it("gives the data of a success", async () => {
    await expect(call(answer(200, { ok: 1 }))).resolves.toEqual({ ok: 1 });
  });

  it("turns an error body into an ApiError with the server's code and message", async () => {
    const error = await call(answer(422, { code: "invalid_input", message: "name: give the app a name" })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    const e = error as ApiError;
    expect([e.status, e.code, e.field, e.detail]).toEqual([422, "invalid_input", "name", "give the app a name"]);
  });

  it("says the control plane cannot be reached when the request fails", async () => {
    const error = (await call(Promise.reject(new TypeError("fetch failed"))).catch((e: unknown) => e)) as ApiError;
    expect([error.status, error.code]).toEqual([0, "network"]);
    expect(error.message).toMatch(/cannot be reached/);
  });

  it("keeps a field only for invalid_input", () => {
    expect(new ApiError(409, "conflict", "name: taken").field).toBeUndefined();
  });
});
