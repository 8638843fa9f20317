import { useQuery } from "@tanstack/react-query";
import { api, call } from "../../api/client";
import { keys, useMe } from "../../api/queries";
import { Bars, bytes, round } from "../../ui/charts";
import { Empty, ErrorNote, Spinner } from "../../ui/ui";

/** `/usage`: the plan's limits against what is used, this month's totals, and 30 days per app. */
export function UsagePage() {
  const me = useMe();
  const usage = useQuery({ queryKey: keys.usage, queryFn: () => call(api.GET("/api/usage")), refetchInterval: 60_000 });
  const plan = me.data?.plan;
  const summary = me.data?.usage;
  const days = lastDays(30);
  return (
    <section className="stack" aria-labelledby="usage-title">
      <h1 id="usage-title">Usage</h1>
      {plan && summary ? (
        <div className="grid">
          <div className="card">
            <h2>Your plan: {plan.name}</h2>
            <dl className="facts">
              <dt>Apps</dt>
              <dd>
                {summary.apps.used} of {summary.apps.limit}
              </dd>
              <dt>Deploys, last 24 h</dt>
              <dd>
                {summary.deploys_last_24h.used} of {summary.deploys_last_24h.limit}
              </dd>
              <dt>Memory per app</dt>
              <dd>{plan.limits.memory_mb} MB</dd>
              <dt>CPUs per app</dt>
              <dd>{plan.limits.cpus}</dd>
              <dt>Custom domains per app</dt>
              <dd>{plan.limits.custom_domains}</dd>
            </dl>
          </div>
          <div className="card">
            <h2>This month</h2>
            <dl className="facts">
              <dt>Container hours</dt>
              <dd>{round(summary.month.container_hours)}</dd>
              <dt>CPU</dt>
              <dd>{round(summary.month.cpu_seconds)} s</dd>
              <dt>Memory</dt>
              <dd>{round(summary.month.mem_gb_hours)} GB-hours</dd>
              <dt>Network</dt>
              <dd>
                in {bytes(summary.month.net_rx_bytes)} · out {bytes(summary.month.net_tx_bytes)}
              </dd>
              <dt>Requests</dt>
              <dd>{summary.month.requests}</dd>
            </dl>
          </div>
        </div>
      ) : null}
      {usage.isPending ? <Spinner label="Loading usage…" /> : <ErrorNote error={usage.error} />}
      {usage.data?.apps.length === 0 ? (
        <Empty title="No apps yet">
          <p>Each app's CPU, memory, network, container hours and requests per day will be shown here.</p>
        </Empty>
      ) : null}
      {usage.data?.apps.map((app) => {
        const byDate = new Map(app.days.map((d) => [d.date, d]));
        const row = days.map((d) => byDate.get(d));
        const total = (f: (d: (typeof app.days)[number]) => number) => app.days.reduce((n, d) => n + f(d), 0);
        return (
          <article key={app.app_id} className="card" aria-label={`Usage of ${app.name}`}>
            <h2>{app.name}</h2>
            <div className="grid">
              <div>
                <h3>Container hours a day</h3>
                <Bars values={row.map((d) => d?.container_hours ?? 0)} labels={days} label={`Container hours of ${app.name} per day, last 30 days`} />
              </div>
              <div>
                <h3>Requests a day</h3>
                <Bars values={row.map((d) => d?.requests ?? 0)} labels={days} label={`Requests of ${app.name} per day, last 30 days`} />
              </div>
            </div>
            <p>
              30 days: {round(total((d) => d.container_hours))} container hours · {round(total((d) => d.cpu_seconds))} CPU seconds ·{" "}
              {round(total((d) => d.mem_gb_hours))} GB-hours · {total((d) => d.requests)} requests · in {bytes(total((d) => d.net_rx_bytes))}, out{" "}
              {bytes(total((d) => d.net_tx_bytes))}
            </p>
          </article>
        );
      })}
    </section>
  );
}

/** The last `n` UTC dates, oldest first, as `YYYY-MM-DD`. */
export function lastDays(n: number, today = new Date()): string[] {
  const out: string[] = [];
  for (let i = n - 1; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}
