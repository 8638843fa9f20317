import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { ApiError, api, call } from "../../api/client";
import { keys } from "../../api/queries";
import { Button, Empty, ErrorNote, Field, Spinner } from "../../ui/ui";
import { parseDotEnv, toDotEnv } from "../apps/env";

/** `/apps/:id/env`: names with masked values; revealing (audited) and editing as `.env`. */
export function EnvEditor({ appId }: { appId: number }) {
  const path = { params: { path: { id: appId } } };
  const masked = useQuery({ queryKey: keys.env(appId), queryFn: () => call(api.GET("/api/apps/{id}/env", path)) });
  const [revealed, setRevealed] = useState<Record<string, string> | null>(null);
  const [shown, setShown] = useState<Set<string>>(new Set());
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const client = useQueryClient();
  const reveal = async (): Promise<Record<string, string>> => {
    if (revealed) return revealed;
    const env = await call(api.GET("/api/apps/{id}/env", { params: { path: { id: appId }, query: { reveal: true } } }));
    setRevealed(env.env);
    return env.env;
  };
  if (masked.isPending) return <Spinner label="Loading the environment…" />;
  if (masked.error) return <ErrorNote error={masked.error} />;
  const names = Object.keys(masked.data.env);
  if (editing !== null) {
    const parsed = parseDotEnv(editing);
    return (
      <form
        className="card form"
        onSubmit={(e) => {
          e.preventDefault();
          if (parsed.errors.length) return;
          call(api.PUT("/api/apps/{id}/env", { ...path, body: parsed.vars }))
            .then(async (result) => {
              setEditing(null);
              setRevealed(null);
              setShown(new Set());
              setSaved(`Saved ${result.names.length} variables; they apply ${result.applies}.`);
              await client.invalidateQueries({ queryKey: keys.env(appId) });
            })
            .catch(setError);
        }}
      >
        <Field
          label="Variables (.env)"
          name="env"
          multiline
          value={editing}
          onChange={setEditing}
          error={parsed.errors.join("; ") || undefined}
          hint="One NAME=value per line. Pasting a whole .env file works."
        />
        <ErrorNote error={error} />
        <div className="actions">
          <Button type="submit" kind="primary">
            Save
          </Button>
          <Button onClick={() => setEditing(null)}>Cancel</Button>
        </div>
      </form>
    );
  }
  return (
    <div className="card">
      <div className="page-head">
        <h2>Environment</h2>
        <Button
          onClick={() => {
            reveal()
              .then((env) => setEditing(toDotEnv(env)))
              .catch(setError);
          }}
        >
          Edit
        </Button>
      </div>
      {saved ? (
        <p className="note" role="status">
          {saved}
        </p>
      ) : null}
      <ErrorNote error={error instanceof ApiError ? error : null} />
      {names.length === 0 ? (
        <Empty title="No variables">
          <p>Add variables with Edit; they are encrypted at rest and given to the app on its next deploy or restart.</p>
        </Empty>
      ) : (
        <ul className="env-list">
          {names.map((name) => (
            <li key={name}>
              <span className="mono env-name">{name}</span>
              <span className="mono env-value">{shown.has(name) && revealed ? revealed[name] : "••••••••"}</span>
              <Button
                label={`${shown.has(name) ? "Hide" : "Reveal"} ${name}`}
                onClick={() => {
                  if (shown.has(name)) {
                    setShown(new Set([...shown].filter((n) => n !== name)));
                    return;
                  }
                  reveal()
                    .then(() => setShown(new Set([...shown, name])))
                    .catch(setError);
                }}
              >
                {shown.has(name) ? "Hide" : "Reveal"}
              </Button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
