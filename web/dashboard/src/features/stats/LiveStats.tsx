import { useQuery } from "@tanstack/react-query";
import { api, call } from "../../api/client";
import { keys } from "../../api/queries";
import { Sparkline, bytes, round } from "../../ui/charts";
import { ErrorNote, when } from "../../ui/ui";

/** An app's latest figures, refreshed every 5 s. */
export function useAppStats(id: number, every = 5000) {
  return useQuery({
    queryKey: keys.stats(id),
    queryFn: () => call(api.GET("/api/apps/{id}/stats", { params: { path: { id } } })),
    refetchInterval: every,
  });
}

/** The Overview's live card: figures now and sparklines of the last hour. */
export function LiveStats({ id }: { id: number }) {
  const stats = useAppStats(id);
  const history = useQuery({
    queryKey: keys.history(id),
    queryFn: () => call(api.GET("/api/apps/{id}/stats/history", { params: { path: { id } } })),
    refetchInterval: 10_000,
  });
  const s = stats.data;
  const points = history.data?.points ?? [];
  return (
    <div className="card" aria-labelledby="live-title">
      <div className="page-head">
        <h2 id="live-title">Live</h2>
        <span className={s?.live ? "live live-on" : "live"}>{s?.live ? "● live" : s?.sampled_at ? `last figures ${when(s.sampled_at)}` : "no figures yet"}</span>
      </div>
      <ErrorNote error={stats.error} />
      {s ? (
        <dl className="facts stats">
          <dt>CPU</dt>
          <dd>
            {round(s.cpu_pct)} % <Sparkline values={points.map((p) => p.cpu_pct)} label="CPU over the last hour" floor={5} />
          </dd>
          <dt>Memory</dt>
          <dd>
            {bytes(s.mem_bytes)}
            {s.mem_limit_bytes > 0 ? ` of ${bytes(s.mem_limit_bytes)}` : ""}{" "}
            <Sparkline values={points.map((p) => p.mem_bytes)} label="Memory over the last hour" />
          </dd>
          <dt>Requests</dt>
          <dd>
            {round(s.requests_per_s)}/s <Sparkline values={points.map((p) => p.requests_per_s)} label="Requests per second over the last hour" />
          </dd>
          <dt>Network</dt>
          <dd>
            in {bytes(s.net_rx_bps)}/s · out {bytes(s.net_tx_bps)}/s
          </dd>
          <dt>Restarts</dt>
          <dd>{s.restarts}</dd>
        </dl>
      ) : null}
    </div>
  );
}
