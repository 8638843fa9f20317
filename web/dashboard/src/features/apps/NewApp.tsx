import { useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Link, useLocation } from "wouter";
import { ApiError, api, call } from "../../api/client";
import { keys, useMe } from "../../api/queries";
import { Button, ErrorNote, Field } from "../../ui/ui";
import { parseDotEnv } from "./env";

const PROVIDER_NAMES: Record<string, string> = {
  github: "GitHub",
  gitlab: "GitLab",
  bitbucket: "Bitbucket",
  codeberg: "Codeberg",
};

/** A repository of a linked account, then one of its branches; sets the form's fields. */
function RepoPicker(props: {
  provider: string;
  repo: string;
  branch: string;
  onRepo: (repo: { clone_url: string; full_name: string; default_branch: string }) => void;
  onBranch: (branch: string) => void;
  error?: string;
}) {
  const { provider } = props;
  const repos = useQuery({
    queryKey: ["git", provider, "repos"],
    queryFn: () => call(api.GET("/api/git/{provider}/repos", { params: { path: { provider } } })),
    staleTime: 60_000,
  });
  const picked = repos.data?.find((r) => r.clone_url === props.repo);
  // `owner/name`, or on GitLab `group/sub/name`: the owner is everything before the last `/`.
  const slash = picked ? picked.full_name.lastIndexOf("/") : -1;
  const owner = picked && slash > 0 ? picked.full_name.slice(0, slash) : "";
  const repoName = picked && slash > 0 ? picked.full_name.slice(slash + 1) : "";
  const branches = useQuery({
    queryKey: ["git", provider, "branches", picked?.full_name],
    queryFn: () =>
      call(api.GET("/api/git/{provider}/repos/{owner}/{name}/branches", { params: { path: { provider, owner, name: repoName } } })),
    enabled: owner !== "" && repoName !== "",
    staleTime: 60_000,
  });
  return (
    <>
      <div className="field">
        <label htmlFor="repo_pick">Repository</label>
        <select
          id="repo_pick"
          name="repo_pick"
          value={props.repo}
          onChange={(e) => {
            const r = repos.data?.find((x) => x.clone_url === e.target.value);
            if (r) props.onRepo(r);
          }}
        >
          <option value="">{repos.isPending ? "Loading repositories…" : "Choose a repository"}</option>
          {repos.data?.map((r) => (
            <option key={r.clone_url} value={r.clone_url}>
              {r.full_name}
              {r.private ? " (private)" : ""}
            </option>
          ))}
        </select>
        {props.error ? <p className="field-error">{props.error}</p> : null}
        <ErrorNote error={repos.error} />
      </div>
      <div className="field">
        <label htmlFor="branch_pick">Branch</label>
        <select id="branch_pick" name="branch" value={props.branch} onChange={(e) => props.onBranch(e.target.value)} disabled={!picked}>
          {(branches.data ?? [{ name: props.branch }]).map((b) => (
            <option key={b.name} value={b.name}>
              {b.name}
            </option>
          ))}
        </select>
      </div>
    </>
  );
}

/** `/apps/new`: a repository (picked from a linked git account, or a URL), branch, build
 * preset, port and env; errors at their field. */
export function NewApp() {
  const me = useMe();
  const linked = me.data?.git_providers ?? [];
  const [source, setSource] = useState<string | null>(null);
  const from = source ?? linked[0]?.provider ?? "url";
  const [name, setName] = useState("");
  const [repo, setRepo] = useState("");
  const [branch, setBranch] = useState("main");
  const [framework, setFramework] = useState("auto");
  const [port, setPort] = useState("8080");
  const [envText, setEnvText] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [, navigate] = useLocation();
  const client = useQueryClient();
  const env = parseDotEnv(envText);
  const fieldError = (field: string) =>
    error instanceof ApiError && error.field === field ? error.detail : undefined;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (env.errors.length > 0) return;
    setBusy(true);
    setError(null);
    const viaLink = from !== "url";
    const body = { name, repo_url: repo, branch, framework, port: Number(port), env: env.vars, ...(viaLink ? { git_provider: from } : {}) };
    call(api.POST("/api/deploy", { body }))
      .then(async (created) => {
        await client.invalidateQueries({ queryKey: keys.me });
        navigate(`/apps/${created.app.id}/deployments`);
      })
      .catch((err: unknown) => {
        setError(err);
        setBusy(false);
      });
  };
  const known = ["name", "repo_url", "branch", "framework", "port", "env", "git_provider"];
  const unplaced = error && !(error instanceof ApiError && error.field && known.includes(error.field));
  return (
    <section aria-labelledby="new-title">
      <p className="crumbs">
        <Link href="/apps">Apps</Link> /
      </p>
      <h1 id="new-title">New app</h1>
      <form className="card form" onSubmit={submit} noValidate>
        {linked.length > 0 ? (
          <div className="field">
            <label htmlFor="source">Source</label>
            <select
              id="source"
              name="source"
              value={from}
              onChange={(e) => {
                setSource(e.target.value);
                setRepo("");
                setBranch("main");
              }}
            >
              {linked.map((l) => (
                <option key={l.provider} value={l.provider}>
                  {PROVIDER_NAMES[l.provider] ?? l.provider} ({l.login})
                </option>
              ))}
              <option value="url">A repository URL</option>
            </select>
            {fieldError("git_provider") ? <p className="field-error">{fieldError("git_provider")}</p> : null}
          </div>
        ) : null}
        {from !== "url" ? (
          <RepoPicker
            provider={from}
            repo={repo}
            branch={branch}
            error={fieldError("repo_url")}
            onRepo={(r) => {
              setRepo(r.clone_url);
              setBranch(r.default_branch);
              if (!name) setName(r.full_name.split("/").pop() ?? "");
            }}
            onBranch={setBranch}
          />
        ) : null}
        <Field label="Name" name="name" value={name} onChange={setName} error={fieldError("name")} hint="Also makes the app's address: my-app → my-app.<your domain>" required />
        {from === "url" ? (
          <>
            <Field label="Repository URL" name="repo_url" value={repo} onChange={setRepo} error={fieldError("repo_url")} hint="https://… of a git repository (a local path in single-machine mode); link a git account on the Account page to pick one" required />
            <Field label="Branch" name="branch" value={branch} onChange={setBranch} error={fieldError("branch")} />
          </>
        ) : null}
        <div className="field">
          <label htmlFor="framework">Build</label>
          <select id="framework" name="framework" value={framework} onChange={(e) => setFramework(e.target.value)}>
            <option value="auto">Detect from the repository (Containerfile, Node, Python, Go, Rust, static)</option>
            <option value="dockerfile">Containerfile / Dockerfile in the repository</option>
            <option value="node">Node.js (package.json)</option>
            <option value="python">Python (requirements.txt or pyproject.toml)</option>
            <option value="go">Go (go.mod)</option>
            <option value="rust">Rust (Cargo.toml)</option>
            <option value="static">Static site (served as files)</option>
          </select>
          {fieldError("framework") ? <p className="field-error">{fieldError("framework")}</p> : null}
        </div>
        <Field label="Port the app listens on" name="port" type="number" value={port} onChange={setPort} error={fieldError("port")} />
        <Field
          label="Environment variables (.env)"
          name="env"
          multiline
          value={envText}
          onChange={setEnvText}
          placeholder={"DATABASE_URL=postgres://…\nGREETING=hello"}
          error={env.errors.join("; ") || fieldError("env")}
          hint="Paste a .env file; values are encrypted at rest"
        />
        {unplaced ? <ErrorNote error={error} /> : null}
        <Button type="submit" kind="primary" busy={busy}>
          Create and deploy
        </Button>
      </form>
    </section>
  );
}
