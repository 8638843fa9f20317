import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, call } from "../../api/client";
import { Button, CopyButton, ErrorNote, Spinner, when } from "../../ui/ui";

const PROVIDERS: [keyof Urls, string][] = [
  ["github", "GitHub"],
  ["gitlab", "GitLab"],
  ["bitbucket", "Bitbucket"],
  ["codeberg", "Codeberg / Gitea / Forgejo"],
];

type Urls = { github: string; gitlab: string; bitbucket: string; codeberg: string };

const hookKey = (id: number) => ["apps", id, "webhook"] as const;
const deliveriesKey = (id: number) => ["apps", id, "webhook", "deliveries"] as const;

/** Push to deploy: the provider URLs and secret to paste, the auto-deploy switch, and the
 * delivery log — what to look at when a push seems to do nothing. */
export function PushWebhook({ id }: { id: number }) {
  const path = { params: { path: { id } } };
  const client = useQueryClient();
  const [error, setError] = useState<unknown>(null);
  const [shown, setShown] = useState(false);
  const hook = useQuery({ queryKey: hookKey(id), queryFn: () => call(api.GET("/api/apps/{id}/webhook", path)) });
  const deliveries = useQuery({
    queryKey: deliveriesKey(id),
    queryFn: () => call(api.GET("/api/apps/{id}/webhook/deliveries", path)),
    refetchInterval: 10_000,
  });
  const refresh = (data: unknown) => client.setQueryData(hookKey(id), data);
  if (hook.isPending) return <Spinner label="Loading the push webhook…" />;
  if (hook.error) return <ErrorNote error={hook.error} />;
  const h = hook.data;
  return (
    <div className="card push">
      <h2>Push to deploy</h2>
      <p className="muted">
        Add a webhook to the repository with the URL of its provider and this secret. A push to the app's branch deploys
        exactly the pushed commit.
      </p>
      <dl className="pairs">
        {PROVIDERS.map(([key, label]) => (
          <div key={key}>
            <dt>{label}</dt>
            <dd>
              <code className="mono wrap">{h.urls[key]}</code> <CopyButton text={h.urls[key]} label={`the ${label} URL`} />
            </dd>
          </div>
        ))}
        <div>
          <dt>Secret</dt>
          <dd>
            <code className="mono">{shown ? h.secret : "••••••••••••"}</code>{" "}
            <Button onClick={() => setShown(!shown)}>{shown ? "Hide" : "Show"}</Button> <CopyButton text={h.secret} label="the secret" />
          </dd>
        </div>
      </dl>
      <p>
        <label>
          <input
            type="checkbox"
            checked={h.auto_deploy}
            onChange={(e) => {
              setError(null);
              call(api.PUT("/api/apps/{id}/webhook", { ...path, body: { auto_deploy: e.target.checked } }))
                .then(refresh)
                .catch(setError);
            }}
          />{" "}
          Deploy on every push to the app's branch
        </label>
      </p>
      <Button
        onClick={() => {
          setError(null);
          call(api.POST("/api/apps/{id}/webhook/rotate", path)).then(refresh).catch(setError);
        }}
      >
        New secret
      </Button>
      <ErrorNote error={error} />
      <h3>Deliveries</h3>
      {deliveries.error ? <ErrorNote error={deliveries.error} /> : null}
      {deliveries.data && deliveries.data.length === 0 ? (
        <p className="muted">No deliveries yet. Once the provider sends a push, it appears here with what came of it.</p>
      ) : null}
      {deliveries.data && deliveries.data.length > 0 ? (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Push deliveries, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Received</th>
                <th scope="col">Provider</th>
                <th scope="col">Event</th>
                <th scope="col">Signature</th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {deliveries.data.map((d) => (
                <tr key={d.id}>
                  <td>{when(d.received_at)}</td>
                  <td>{d.provider}</td>
                  <td>{d.event || "—"}</td>
                  <td>{d.verified ? "valid" : "refused"}</td>
                  <td>
                    {d.outcome}
                    {d.deployment_id ? ` (#${d.deployment_id})` : ""}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}
