import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, render, screen, waitFor } from "@testing-library/react";
import { afterAll, describe, expect, it, vi } from "vitest";

/** A stand-in for the browser's EventSource that the test feeds by hand. */
class FakeEventSource {
  static last: FakeEventSource | null = null;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  closed = false;
  private listeners = new Map<string, ((e: MessageEvent<string>) => void)[]>();
  constructor(readonly url: string) {
    FakeEventSource.last = this;
  }
  addEventListener(type: string, listener: (e: MessageEvent<string>) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  emit(type: string, data: unknown) {
    for (const listener of this.listeners.get(type) ?? []) listener(new MessageEvent(type, { data: JSON.stringify(data) }));
  }
  close() {
    this.closed = true;
  }
}

vi.stubGlobal("EventSource", FakeEventSource);
vi.stubGlobal(
  "fetch",
  vi.fn(async () => new Response(JSON.stringify({ deployment_id: 7, log: "Cloning…\n" }), { status: 200, headers: { "content-type": "application/json" } })),
);
const { useBuildLog } = await import("./Deployments");

afterAll(() => vi.unstubAllGlobals());

function Log({ active }: { active: boolean }) {
  return <pre data-testid="log">{useBuildLog(3, 7, active) ?? "(none)"}</pre>;
}

describe("useBuildLog", () => {
  it("shows the stored log, then this deployment's live lines only, from the app's stream", async () => {
    const client = new QueryClient();
    const view = render(
      <QueryClientProvider client={client}>
        <Log active />
      </QueryClientProvider>,
    );
    await waitFor(() => expect(screen.getByTestId("log").textContent).toBe("Cloning…\n"));
    const source = FakeEventSource.last;
    expect(source?.url).toBe("/api/apps/3/logs/stream");
    act(() => {
      source?.onopen?.();
      source?.emit("build", { deployment_id: 7, line: "STEP 1/3: FROM base" });
      source?.emit("build", { deployment_id: 6, line: "an older deployment's line" });
      source?.emit("runtime", { deployment_id: 7, line: "a runtime line" });
      source?.emit("build", { deployment_id: 7, line: "STEP 2/3: RUN make" });
    });
    expect(screen.getByTestId("log").textContent).toBe("Cloning…\nSTEP 1/3: FROM base\nSTEP 2/3: RUN make");
    view.rerender(
      <QueryClientProvider client={client}>
        <Log active={false} />
      </QueryClientProvider>,
    );
    expect(source?.closed).toBe(true);
    await waitFor(() => expect(screen.getByTestId("log").textContent).toBe("Cloning…\n"));
  });
});
