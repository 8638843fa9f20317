import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterAll, describe, expect, it, vi } from "vitest";

// The API answers as the control plane does to a bad name: 422 with the field in the message.
const fetchMock = vi.fn(async (..._args: unknown[]) =>
  new Response(JSON.stringify({ code: "invalid_input", message: "name: give the app a name of 1 to 64 characters" }), {
    status: 422,
    headers: { "content-type": "application/json" },
  }),
);
vi.stubGlobal("fetch", fetchMock);
const { NewApp } = await import("./NewApp");

afterAll(() => vi.unstubAllGlobals());

describe("NewApp", () => {
  it("shows the API's validation error at its field, and a bad .env line before sending", async () => {
    render(
      <QueryClientProvider client={new QueryClient()}>
        <NewApp />
      </QueryClientProvider>,
    );
    fireEvent.change(screen.getByLabelText("Environment variables (.env)"), { target: { value: "lower=1" } });
    expect(screen.getByRole("alert").textContent).toContain("line 1: lower is not a valid name");
    fireEvent.click(screen.getByRole("button", { name: "Create and deploy" }));
    expect(fetchMock).not.toHaveBeenCalled();

    fireEvent.change(screen.getByLabelText("Environment variables (.env)"), { target: { value: "GOOD=1" } });
    fireEvent.change(screen.getByLabelText("Repository URL"), { target: { value: "https://example.com/r.git" } });
    fireEvent.click(screen.getByRole("button", { name: "Create and deploy" }));
    await waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(1));
    const name = screen.getByLabelText("Name");
    await waitFor(() => expect(name.getAttribute("aria-invalid")).toBe("true"));
    const described = document.getElementById(name.getAttribute("aria-describedby") ?? "");
    expect(described?.textContent).toBe("give the app a name of 1 to 64 characters");
  });
});
