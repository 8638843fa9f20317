import { useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { ApiError, type Schemas, api, call } from "../../api/client";
import { keys } from "../../api/queries";
import { Button, CopyButton, Empty, ErrorNote, Field, Status, when } from "../../ui/ui";

const EVENTS = ["alert.fired", "alert.resolved", "deployment.succeeded", "deployment.failed"];

/** The user's webhook endpoints: add one (its secret shown once), see deliveries, redeliver. */
export function Webhooks() {
  const hooks = useQuery({ queryKey: keys.webhooks, queryFn: () => call(api.GET("/api/webhooks")) });
  const client = useQueryClient();
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<string[]>(EVENTS);
  const [secret, setSecret] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const refresh = () => client.invalidateQueries({ queryKey: keys.webhooks });
  const add = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setSecret(null);
    call(api.POST("/api/webhooks", { body: { url, events } }))
      .then((created) => {
        setSecret(created.secret);
        setUrl("");
        return refresh();
      })
      .catch(setError)
      .finally(() => setBusy(false));
  };
  const urlError = error instanceof ApiError && (error.field === "url" || error.code === "url_not_allowed") ? error.message : undefined;
  return (
    <div className="stack" aria-labelledby="hooks-title">
      <h2 id="hooks-title">Webhooks</h2>
      <form className="card form" onSubmit={add} aria-label="Add a webhook">
        <Field label="Endpoint URL" name="url" type="url" value={url} onChange={setUrl} placeholder="https://example.com/hooks/wisehosting" error={urlError} required />
        <fieldset className="checks">
          <legend>Events</legend>
          {EVENTS.map((ev) => (
            <label key={ev}>
              <input type="checkbox" checked={events.includes(ev)} onChange={(e) => setEvents(e.target.checked ? [...events, ev] : events.filter((x) => x !== ev))} /> {ev}
            </label>
          ))}
        </fieldset>
        <div>
          <Button type="submit" kind="primary" busy={busy}>
            Add webhook
          </Button>
        </div>
      </form>
      {error && !urlError ? <ErrorNote error={error} /> : null}
      {secret ? (
        <div className="note" role="status">
          <strong>Signing secret — shown only now.</strong> Check each delivery's <code>X-WH-Signature</code> with it.
          <p className="secret mono">
            {secret} <CopyButton text={secret} label="signing secret" />
          </p>
        </div>
      ) : null}
      <ErrorNote error={hooks.error} />
      {hooks.data?.length === 0 ? (
        <Empty title="No webhooks">
          <p>Add an endpoint to be told of alerts and deploys by an HTTP POST, signed with a secret.</p>
        </Empty>
      ) : null}
      {hooks.data?.map((h) => <Endpoint key={h.id} endpoint={h} onChange={refresh} />)}
    </div>
  );
}

type EndpointRow = Schemas["Endpoint"];

function Endpoint({ endpoint, onChange }: { endpoint: EndpointRow; onChange: () => Promise<unknown> }) {
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const client = useQueryClient();
  const path = { params: { path: { id: endpoint.id } } };
  const deliveries = useQuery({
    queryKey: keys.deliveries(endpoint.id),
    queryFn: () => call(api.GET("/api/webhooks/{id}/deliveries", path)),
    enabled: open,
    refetchInterval: open ? 5000 : false,
  });
  const act = (p: Promise<unknown>) =>
    p
      .then(onChange)
      .then(() => client.invalidateQueries({ queryKey: keys.deliveries(endpoint.id) }))
      .catch(setError);
  return (
    <article className="card" aria-label={`Webhook ${endpoint.url}`}>
      <div className="page-head">
        <h3 className="mono app-url">{endpoint.url}</h3>
        <span className={`status status-${endpoint.enabled ? "ok" : "bad"}`}>{endpoint.enabled ? "on" : "off"}</span>
      </div>
      <p>{endpoint.events.join(", ")}</p>
      {endpoint.disabled_reason ? <p className="field-error">{endpoint.disabled_reason}</p> : null}
      <div className="actions">
        <Button onClick={() => setOpen(!open)}>{open ? "Hide deliveries" : "Deliveries"}</Button>
        {!endpoint.enabled ? <Button onClick={() => void act(call(api.POST("/api/webhooks/{id}/enable", path)))}>Turn on</Button> : null}
        <Button kind="danger" onClick={() => void act(call(api.DELETE("/api/webhooks/{id}", path)))}>
          Delete
        </Button>
      </div>
      <ErrorNote error={error ?? deliveries.error} />
      {open && deliveries.data ? (
        deliveries.data.length === 0 ? (
          <p>No deliveries yet.</p>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Event</th>
                  <th>Status</th>
                  <th>Tries</th>
                  <th>Answer</th>
                  <th>Created</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {deliveries.data.map((d) => (
                  <tr key={d.id}>
                    <td>{d.event}</td>
                    <td>
                      <Status status={d.status} />
                    </td>
                    <td>{d.attempts}</td>
                    <td title={d.last_error ?? undefined}>{d.response_status ?? (d.last_error ? "no answer" : "—")}</td>
                    <td>{when(d.created_at)}</td>
                    <td>
                      <Button onClick={() => void act(call(api.POST("/api/webhooks/{id}/deliveries/{did}/redeliver", { params: { path: { id: endpoint.id, did: d.id } } })))}>Redeliver</Button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      ) : null}
    </article>
  );
}
