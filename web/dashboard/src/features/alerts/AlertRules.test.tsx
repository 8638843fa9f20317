import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterAll, describe, expect, it, vi } from "vitest";

// The API as the control plane answers: the rules, and a 422 for a threshold out of range.
const posted: unknown[] = [];
const fetchMock = vi.fn(async (input: Request | string) => {
  const request = input instanceof Request ? input : new Request(input);
  const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  if (request.method === "POST") {
    posted.push(await request.json());
    return json({ code: "invalid_input", message: "threshold: 150 is out of range for memory: give % of the memory limit between 1 and 100" }, 422);
  }
  return json([{ id: 1, app_id: 7, kind: "crashloop", threshold: null, sustain_minutes: 0, firing: false, created_at: "2026-11-28T12:00:00Z" }]);
});
vi.stubGlobal("fetch", fetchMock);
const { AlertRules } = await import("./AlertRules");

afterAll(() => vi.unstubAllGlobals());

describe("AlertRules", () => {
  it("lists the rules, sends a metric rule with its unit's threshold, and shows the API's range error at the field", async () => {
    render(
      <QueryClientProvider client={new QueryClient()}>
        <AlertRules appId={7} />
      </QueryClientProvider>,
    );
    expect(await screen.findByText("Crash loop")).toBeTruthy();
    fireEvent.change(screen.getByLabelText("Alert when"), { target: { value: "memory" } });
    const threshold = screen.getByLabelText("Stays over (% of the limit)");
    fireEvent.change(threshold, { target: { value: "150" } });
    fireEvent.click(screen.getByRole("button", { name: "Save rule" }));
    await waitFor(() => expect(threshold.getAttribute("aria-invalid")).toBe("true"));
    expect(posted).toEqual([{ kind: "memory", threshold: 150, sustain_minutes: 5 }]);
    const described = document.getElementById(threshold.getAttribute("aria-describedby") ?? "");
    expect(described?.textContent).toContain("between 1 and 100");
  });
});
