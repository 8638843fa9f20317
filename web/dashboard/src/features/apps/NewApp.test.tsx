import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

// The control plane as these tests need it: who is signed in (with or without a linked
// GitHub account), the account's repositories and branches, and a deploy that answers as
// the API does to a bad name: 422 with the field in the message.
let linked: { provider: string; login: string; linked_at: string }[] = [];
const deploys: unknown[] = [];
const fetchMock = vi.fn(async (input: Request | string) => {
  const request = typeof input === "string" ? new Request(input) : input;
  const path = new URL(request.url).pathname;
  if (path === "/api/me") return json(200, { apps: [], git_providers: linked });
  if (path === "/api/git/github/repos") {
    return json(200, [
      { full_name: "ann/site", clone_url: "https://github.com/ann/site.git", private: false, default_branch: "main" },
      { full_name: "ann/shop", clone_url: "https://github.com/ann/shop.git", private: true, default_branch: "trunk" },
    ]);
  }
  if (path === "/api/git/github/repos/ann/shop/branches") return json(200, [{ name: "trunk" }, { name: "next" }]);
  if (path === "/api/deploy") {
    deploys.push(await request.json());
    return json(422, { code: "invalid_input", message: "name: give the app a name of 1 to 64 characters" });
  }
  return json(404, { code: "not_found", message: path });
});
vi.stubGlobal("fetch", fetchMock);
const { NewApp } = await import("./NewApp");

afterAll(() => vi.unstubAllGlobals());
afterEach(cleanup);
beforeEach(() => {
  linked = [];
  deploys.length = 0;
});

function renderForm() {
  render(
    <QueryClientProvider client={new QueryClient()}>
      <NewApp />
    </QueryClientProvider>,
  );
}

describe("NewApp", () => {
  it("shows the API's validation error at its field, and a bad .env line before sending", async () => {
    renderForm();
    fireEvent.change(screen.getByLabelText("Environment variables (.env)"), { target: { value: "lower=1" } });
    expect(screen.getByRole("alert").textContent).toContain("line 1: lower is not a valid name");
    fireEvent.click(screen.getByRole("button", { name: "Create and deploy" }));
    expect(deploys).toHaveLength(0);

    fireEvent.change(screen.getByLabelText("Environment variables (.env)"), { target: { value: "GOOD=1" } });
    fireEvent.change(screen.getByLabelText("Repository URL"), { target: { value: "https://example.com/r.git" } });
    fireEvent.click(screen.getByRole("button", { name: "Create and deploy" }));
    await waitFor(() => expect(deploys).toHaveLength(1));
    expect(deploys[0]).toMatchObject({ repo_url: "https://example.com/r.git", framework: "auto" });
    expect(deploys[0]).not.toHaveProperty("git_provider");
    const name = screen.getByLabelText("Name");
    await waitFor(() => expect(name.getAttribute("aria-invalid")).toBe("true"));
    const described = document.getElementById(name.getAttribute("aria-describedby") ?? "");
    expect(described?.textContent).toBe("give the app a name of 1 to 64 characters");
  });

  it("picks a repository and branch from a linked account and deploys with the link", async () => {
    linked = [{ provider: "github", login: "ann", linked_at: "2026-12-01T00:00:00Z" }];
    renderForm();
    const source = await screen.findByLabelText("Source");
    expect((source as HTMLSelectElement).value).toBe("github");
    expect(screen.queryByLabelText("Repository URL")).toBeNull();
    const pick = screen.getByLabelText("Repository") as HTMLSelectElement;
    await waitFor(() => expect(pick.options.length).toBe(3));
    expect(pick.options[2]?.textContent).toBe("ann/shop (private)");
    fireEvent.change(pick, { target: { value: "https://github.com/ann/shop.git" } });
    expect((screen.getByLabelText("Name") as HTMLInputElement).value).toBe("shop");
    const branch = screen.getByLabelText("Branch") as HTMLSelectElement;
    await waitFor(() => expect(branch.options.length).toBe(2));
    fireEvent.change(branch, { target: { value: "next" } });
    fireEvent.click(screen.getByRole("button", { name: "Create and deploy" }));
    await waitFor(() => expect(deploys).toHaveLength(1));
    expect(deploys[0]).toMatchObject({
      name: "shop",
      repo_url: "https://github.com/ann/shop.git",
      branch: "next",
      git_provider: "github",
    });
  });
});
