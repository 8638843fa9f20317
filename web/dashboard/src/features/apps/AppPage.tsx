import { useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useState } from "react";
import { Link, Route, Switch, useLocation } from "wouter";
import { api, call } from "../../api/client";
import { keys, useApp, useDeployments, useMe } from "../../api/queries";
import { AlertRules } from "../alerts/AlertRules";
import { Deployments } from "../deployments/Deployments";
import { LiveStats } from "../stats/LiveStats";
import { Domains } from "../domains/Domains";
import { EnvEditor } from "../env/EnvEditor";
import { Logs } from "../logs/Logs";
import { PushWebhook } from "../push/PushWebhook";
import { Button, ErrorNote, Field, Spinner, Status, when } from "../../ui/ui";

const TABS: [string, string][] = [
  ["", "Overview"],
  ["/deployments", "Deployments"],
  ["/logs", "Logs"],
  ["/env", "Environment"],
  ["/domains", "Domains"],
  ["/alerts", "Alerts"],
  ["/settings", "Settings"],
];

/** `/apps/:id/*`: the app's header, its tabs, and the tab's page. */
export function AppPage({ id }: { id: number }) {
  const app = useApp(id);
  const me = useMe();
  const [location] = useLocation();
  if (app.isPending) return <Spinner label="Loading the app…" />;
  if (app.error) return <ErrorNote error={app.error} />;
  const url = me.data?.apps.find((a) => a.id === id)?.url;
  return (
    <section aria-labelledby="app-title">
      <p className="crumbs">
        <Link href="~/apps">Apps</Link> /
      </p>
      <div className="page-head">
        <h1 id="app-title">{app.data.name}</h1>
        <Status status={app.data.status} />
      </div>
      {app.data.paused ? (
        <div className="note note-error" role="status">
          The platform's operators paused this app: it does not run, and it cannot be started, restarted or deployed until they
          unpause it. Ask them why.
        </div>
      ) : null}
      {url ? (
        <p>
          <a href={url} target="_blank" rel="noreferrer" className="app-url">
            {url}
          </a>
        </p>
      ) : null}
      <nav className="tabs" aria-label="App">
        {TABS.map(([path, label]) => {
          const active = path === "" ? location === "/" || location === "" : location.startsWith(path);
          return (
            <Link key={label} href={path || "/"} className={active ? "active" : undefined} aria-current={active ? "page" : undefined}>
              {label}
            </Link>
          );
        })}
      </nav>
      <Switch>
        <Route path="/">
          <Overview id={id} />
        </Route>
        <Route path="/deployments">
          <Deployments appId={id} />
        </Route>
        <Route path="/logs">
          <Logs appId={id} />
        </Route>
        <Route path="/env">
          <EnvEditor appId={id} />
        </Route>
        <Route path="/domains">
          <Domains appId={id} />
        </Route>
        <Route path="/alerts">
          <AlertRules appId={id} />
        </Route>
        <Route path="/settings">
          <Settings
            id={id}
            name={app.data.name}
            hasToken={app.data.has_git_token}
            health={{ path: app.data.health_check_path, timeout: app.data.health_check_timeout_secs ?? null }}
            https={{ redirect: app.data.https_redirect, hsts: app.data.hsts }}
          />
        </Route>
      </Switch>
    </section>
  );
}

function Action({ label, run, kind }: { label: string; run: () => Promise<unknown>; kind?: "primary" | "danger" }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <span className="action">
      <Button
        kind={kind ?? "plain"}
        busy={busy}
        onClick={() => {
          setBusy(true);
          setError(null);
          run()
            .catch(setError)
            .finally(() => setBusy(false));
        }}
      >
        {label}
      </Button>
      {error ? <ErrorNote error={error} /> : null}
    </span>
  );
}

function Overview({ id }: { id: number }) {
  const app = useApp(id);
  const deployments = useDeployments(id);
  const client = useQueryClient();
  const [, navigate] = useLocation();
  if (!app.data) return null;
  const current = deployments.data?.find((d) => d.id === app.data.current_deployment_id);
  const latest = deployments.data?.[0];
  const refresh = () => client.invalidateQueries({ queryKey: ["apps", id] }).then(() => client.invalidateQueries({ queryKey: keys.me }));
  const path = { params: { path: { id } } };
  return (
    <div className="grid">
      <LiveStats id={id} />
      <div className="card">
        <h2>Running version</h2>
        {current ? (
          <dl className="facts">
            <dt>Deployment</dt>
            <dd>#{current.id}</dd>
            <dt>Commit</dt>
            <dd className="mono">{current.commit?.slice(0, 12) ?? "—"}</dd>
            <dt>Since</dt>
            <dd>{when(current.finished_at)}</dd>
          </dl>
        ) : (
          <p className="muted">Nothing runs yet{latest ? ` — deployment #${latest.id} is ${latest.status.replaceAll("_", " ")}` : ""}.</p>
        )}
        <dl className="facts">
          <dt>Repository</dt>
          <dd className="mono">{app.data.repo_url}</dd>
          <dt>Branch</dt>
          <dd>{app.data.branch}</dd>
          <dt>Worker</dt>
          <dd>{app.data.worker_id ?? "not placed yet"}</dd>
        </dl>
      </div>
      <div className="card">
        <h2>Actions</h2>
        <div className="actions">
          <Action
            label="Redeploy"
            kind="primary"
            run={() => call(api.POST("/api/apps/{id}/deployments", { ...path, body: {} })).then(() => { void refresh(); navigate("/deployments"); })}
          />
          <Action label="Restart" run={() => call(api.POST("/api/apps/{id}/restart", path)).then(refresh)} />
          {app.data.status === "stopped" ? (
            <Action label="Start" run={() => call(api.POST("/api/apps/{id}/start", path)).then(refresh)} />
          ) : (
            <Action label="Stop" run={() => call(api.POST("/api/apps/{id}/stop", path)).then(refresh)} />
          )}
        </div>
      </div>
    </div>
  );
}

function Settings({
  id,
  name,
  hasToken,
  health,
  https,
}: {
  id: number;
  name: string;
  hasToken: boolean;
  health: { path: string; timeout: number | null };
  https: { redirect: boolean; hsts: boolean };
}) {
  const [token, setToken] = useState("");
  const [confirm, setConfirm] = useState("");
  const [error, setError] = useState<unknown>(null);
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const path = { params: { path: { id } } };
  return (
    <>
    <div className="grid">
      <form
        className="card form"
        onSubmit={(e) => {
          e.preventDefault();
          call(api.PUT("/api/apps/{id}/git-token", { ...path, body: { token: token || null } }))
            .then(() => {
              setToken("");
              return client.invalidateQueries({ queryKey: keys.app(id) });
            })
            .catch(setError);
        }}
      >
        <h2>Repository token</h2>
        <p className="muted">{hasToken ? "A token is set; it is never shown again." : "No token: the repository must be public."}</p>
        <Field label="New token (empty removes it)" name="token" type="password" value={token} onChange={setToken} autoComplete="off" />
        <ErrorNote error={error} />
        <Button type="submit">Save token</Button>
      </form>
      <HealthCheck id={id} current={health} />
      <HttpsSettings id={id} current={https} />
      <DangerZone
        name={name}
        confirm={confirm}
        setConfirm={setConfirm}
        onDelete={() =>
          call(api.DELETE("/api/apps/{id}", path)).then(async () => {
            await client.invalidateQueries({ queryKey: keys.me });
            navigate("~/apps");
          })
        }
      />
    </div>
    <PushWebhook id={id} />
    </>
  );
}

/** The path a new version must answer before it takes the traffic, and how long it has. */
/** A settings form's save: the error or "Saved.", and the app read again after. */
function useSave(id: number) {
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const client = useQueryClient();
  const save = (request: () => Promise<unknown>) => {
    setError(null);
    setSaved(false);
    request()
      .then(() => {
        setSaved(true);
        return client.invalidateQueries({ queryKey: keys.app(id) });
      })
      .catch(setError);
  };
  return { error, saved, save };
}

function HealthCheck({ id, current }: { id: number; current: { path: string; timeout: number | null } }) {
  const [path, setPath] = useState(current.path);
  const [timeout, setTimeout_] = useState(current.timeout === null ? "" : String(current.timeout));
  const { error, saved, save } = useSave(id);
  return (
    <form
      className="card form"
      onSubmit={(e) => {
        e.preventDefault();
        const body = { path, timeout_secs: timeout.trim() === "" ? null : Number(timeout) };
        save(() => call(api.PUT("/api/apps/{id}/health-check", { params: { path: { id } }, body })));
      }}
    >
      <h2>Health check</h2>
      <p className="muted">
        A new version takes the traffic only once it answers here: at <code>/</code> anything below 500, at another path a 2xx or
        3xx. It applies from the next deploy, restart or rollback.
      </p>
      <Field label="Path" name="health_path" value={path} onChange={setPath} placeholder="/healthz" />
      <Field label="Seconds it may take (empty: 60)" name="health_timeout" value={timeout} onChange={setTimeout_} type="number" />
      <ErrorNote error={error} />
      {saved ? <p role="status">Saved.</p> : null}
      <Button type="submit">Save health check</Button>
    </form>
  );
}

/** How the edge router serves the app once its hosts have certificates. */
function HttpsSettings({ id, current }: { id: number; current: { redirect: boolean; hsts: boolean } }) {
  const [redirect, setRedirect] = useState(current.redirect);
  const [hsts, setHsts] = useState(current.hsts);
  const { error, saved, save } = useSave(id);
  return (
    <form
      className="card form"
      onSubmit={(e) => {
        e.preventDefault();
        save(() => call(api.PUT("/api/apps/{id}/https", { params: { path: { id } }, body: { redirect, hsts } })));
      }}
    >
      <h2>HTTPS</h2>
      <p className="muted">
        Custom domains get certificates once verified. Plain HTTP to a host with a certificate can be sent to HTTPS, and browsers can be
        told to use only HTTPS for a year (HSTS: turn it on once HTTPS works).
      </p>
      <label>
        <input type="checkbox" name="https_redirect" checked={redirect} onChange={(e) => setRedirect(e.target.checked)} /> Redirect HTTP
        to HTTPS
      </label>
      <label>
        <input type="checkbox" name="hsts" checked={hsts} onChange={(e) => setHsts(e.target.checked)} /> Send Strict-Transport-Security
      </label>
      <ErrorNote error={error} />
      {saved ? <p role="status">Saved.</p> : null}
      <Button type="submit">Save HTTPS settings</Button>
    </form>
  );
}

function DangerZone(props: { name: string; confirm: string; setConfirm: (v: string) => void; onDelete: () => Promise<unknown> }): ReactNode {
  return (
    <div className="card danger">
      <h2>Delete the app</h2>
      <p>Its containers and images are removed from the worker. Type the app's name to confirm.</p>
      <Field label="App name" name="confirm" value={props.confirm} onChange={props.setConfirm} />
      <Action label="Delete app" kind="danger" run={() => (props.confirm === props.name ? props.onDelete() : Promise.reject(new Error("Type the app's name exactly to delete it.")))} />
    </div>
  );
}
