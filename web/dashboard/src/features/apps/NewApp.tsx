import { useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Link, useLocation } from "wouter";
import { ApiError, api, call } from "../../api/client";
import { keys } from "../../api/queries";
import { Button, ErrorNote, Field } from "../../ui/ui";
import { parseDotEnv } from "./env";

/** `/apps/new`: a repository, branch, build preset, port and env; errors at their field. */
export function NewApp() {
  const [name, setName] = useState("");
  const [repo, setRepo] = useState("");
  const [branch, setBranch] = useState("main");
  const [framework, setFramework] = useState("dockerfile");
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
    const body = { name, repo_url: repo, branch, framework, port: Number(port), env: env.vars };
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
  const known = ["name", "repo_url", "branch", "framework", "port", "env"];
  const unplaced = error && !(error instanceof ApiError && error.field && known.includes(error.field));
  return (
    <section aria-labelledby="new-title">
      <p className="crumbs">
        <Link href="/apps">Apps</Link> /
      </p>
      <h1 id="new-title">New app</h1>
      <form className="card form" onSubmit={submit} noValidate>
        <Field label="Name" name="name" value={name} onChange={setName} error={fieldError("name")} hint="Also makes the app's address: my-app → my-app.<your domain>" required />
        <Field label="Repository URL" name="repo_url" value={repo} onChange={setRepo} error={fieldError("repo_url")} hint="https://… of a git repository (a local path in single-machine mode)" required />
        <Field label="Branch" name="branch" value={branch} onChange={setBranch} error={fieldError("branch")} />
        <div className="field">
          <label htmlFor="framework">Build</label>
          <select id="framework" name="framework" value={framework} onChange={(e) => setFramework(e.target.value)}>
            <option value="dockerfile">Containerfile / Dockerfile in the repository</option>
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
