import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "wouter";
import { api, call } from "../../api/client";
import { keys, useMe } from "../../api/queries";
import { Button, Empty, ErrorNote, Spinner, Status, when } from "../../ui/ui";
import { Webhooks } from "./Webhooks";

const FILTERS = ["firing", "acknowledged", "resolved"] as const;
type Filter = (typeof FILTERS)[number];

/** `/alerts`: the user's alerts by status, to acknowledge or resolve; then their webhooks. */
export function AlertsPage() {
  const [filter, setFilter] = useState<Filter>("firing");
  const alerts = useQuery({
    queryKey: keys.alerts(filter),
    queryFn: () => call(api.GET("/api/alerts", { params: { query: { status: filter } } })),
    refetchInterval: 10_000,
  });
  const me = useMe();
  const client = useQueryClient();
  const [error, setError] = useState<unknown>(null);
  const appName = (id: number | null | undefined) => me.data?.apps.find((a) => a.id === id)?.name;
  const move = (id: number, to: "acknowledge" | "resolve") => {
    setError(null);
    const path = { params: { path: { id } } };
    const request = to === "acknowledge" ? api.POST("/api/alerts/{id}/acknowledge", path) : api.POST("/api/alerts/{id}/resolve", path);
    return call(request)
      .then(() => client.invalidateQueries({ queryKey: ["alerts"] }))
      .catch(setError);
  };
  return (
    <section className="stack" aria-labelledby="alerts-title">
      <h1 id="alerts-title">Alerts</h1>
      <div className="toolbar" role="group" aria-label="Show alerts that are">
        {FILTERS.map((f) => (
          <Button key={f} kind={f === filter ? "primary" : "plain"} onClick={() => setFilter(f)}>
            {f[0]?.toUpperCase() + f.slice(1)}
          </Button>
        ))}
      </div>
      <ErrorNote error={error ?? alerts.error} />
      {alerts.isPending ? <Spinner label="Loading alerts…" /> : null}
      {alerts.data?.length === 0 ? (
        <Empty title={`No ${filter} alerts`}>
          <p>When an app crash-loops, a deploy fails, its worker goes offline, or CPU or memory stay over a rule's threshold, the alert appears here.</p>
        </Empty>
      ) : null}
      {alerts.data && alerts.data.length > 0 ? (
        <ul className="rows card" aria-label={`${filter} alerts`}>
          {alerts.data.map((a) => (
            <li key={a.id} className="row">
              <div>
                <Status status={a.status} /> <strong>{a.kind.replaceAll("_", " ")}</strong>
                {a.app_id ? (
                  <>
                    {" "}
                    · <Link href={`/apps/${a.app_id}/alerts`}>{appName(a.app_id) ?? `app #${a.app_id}`}</Link>
                  </>
                ) : null}
                <p>{a.message}</p>
                <small>
                  fired {when(a.fired_at)}
                  {a.resolved_at ? ` · resolved ${when(a.resolved_at)}` : ""}
                </small>
              </div>
              <div className="actions">
                {a.status === "firing" ? <Button onClick={() => void move(a.id, "acknowledge")}>Acknowledge</Button> : null}
                {a.status !== "resolved" ? <Button onClick={() => void move(a.id, "resolve")}>Resolve</Button> : null}
              </div>
            </li>
          ))}
        </ul>
      ) : null}
      <Webhooks />
    </section>
  );
}
