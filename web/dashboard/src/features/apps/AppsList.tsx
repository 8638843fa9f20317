import { Link } from "wouter";
import { useMe } from "../../api/queries";
import { round } from "../../ui/charts";
import { Empty, Status, when } from "../../ui/ui";
import { useAppStats } from "../stats/LiveStats";

/** `/apps`: every app with its status and URL. */
export function AppsList() {
  const me = useMe();
  const apps = me.data?.apps ?? [];
  return (
    <section aria-labelledby="apps-title">
      <div className="page-head">
        <h1 id="apps-title">Apps</h1>
        <Link className="btn btn-primary" href="/apps/new">
          New app
        </Link>
      </div>
      {apps.length === 0 ? (
        <Empty title="No apps yet">
          <p>
            Create one from a git repository: <Link href="/apps/new">New app</Link>. It is built and started for you,
            and gets its own URL.
          </p>
        </Empty>
      ) : (
        <ul className="app-list">
          {apps.map((app) => (
            <li key={app.id} className="card app-card">
              <div className="app-card-head">
                <Link href={`/apps/${app.id}`} className="app-name">
                  {app.name}
                </Link>
                <Status status={app.status} />
              </div>
              <a className="app-url" href={app.url} target="_blank" rel="noreferrer">
                {app.url}
              </a>
              {app.status === "running" ? <RequestRate id={app.id} /> : null}
              <p className="muted app-last">
                {app.last_deployment
                  ? `Last deploy #${app.last_deployment.id} ${app.last_deployment.status.replaceAll("_", " ")}, ${when(app.last_deployment.created_at)}`
                  : "Never deployed"}
              </p>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** An app's live request rate, refreshed every 10 s. */
function RequestRate({ id }: { id: number }) {
  const stats = useAppStats(id, 10_000);
  if (!stats.data?.live) return null;
  return <p className="live">{round(stats.data.requests_per_s)} requests/s</p>;
}
