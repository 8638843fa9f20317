import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { type Deployment, api, call } from "../../api/client";
import { isActive, keys, useDeployments } from "../../api/queries";
import { Button, Empty, ErrorNote, Spinner, Status, duration, when } from "../../ui/ui";

const STEPS = ["queued", "cloning", "building", "starting", "health_checking", "switching", "running"];

/** Where a deployment stands, as a stepper (the last step reached is current). */
export function Stepper({ status }: { status: string }) {
  const reached = STEPS.indexOf(status);
  const ended = status === "failed" || status === "cancelled";
  return (
    <ol className="stepper" aria-label="Deploy progress">
      {STEPS.map((step, i) => {
        const state = reached >= 0 && i < reached ? "done" : i === reached ? "current" : "todo";
        return (
          <li key={step} className={`step step-${ended && state === "todo" ? "skipped" : state}`} aria-current={state === "current" ? "step" : undefined}>
            {step.replaceAll("_", " ")}
          </li>
        );
      })}
    </ol>
  );
}

/** `/apps/:id/deployments`: the list, and the chosen one's progress and build log. */
export function Deployments({ appId }: { appId: number }) {
  const deployments = useDeployments(appId);
  const [chosen, setChosen] = useState<number | null>(null);
  if (deployments.isPending) return <Spinner label="Loading deployments…" />;
  if (deployments.error) return <ErrorNote error={deployments.error} />;
  if (deployments.data.length === 0) {
    return (
      <Empty title="No deployments yet">
        <p>Redeploy from the overview to build the repository's branch.</p>
      </Empty>
    );
  }
  const shown = deployments.data.find((d) => d.id === chosen) ?? deployments.data[0];
  return (
    <div className="split">
      <div className="table-wrap">
        <table>
          <caption className="visually-hidden">Deployments, newest first</caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Status</th>
              <th scope="col">Commit</th>
              <th scope="col">Started</th>
              <th scope="col">Took</th>
            </tr>
          </thead>
          <tbody>
            {deployments.data.map((d) => (
              <tr key={d.id} className={d.id === shown?.id ? "selected" : undefined}>
                <td>
                  <button type="button" className="linkish" onClick={() => setChosen(d.id)} aria-pressed={d.id === shown?.id}>
                    #{d.id}
                  </button>
                </td>
                <td>
                  <Status status={d.status} />
                  {d.rollback_of ? <span className="muted"> · rollback of #{d.rollback_of}</span> : null}
                </td>
                <td className="mono">{d.commit?.slice(0, 10) ?? "—"}</td>
                <td>{when(d.started_at ?? d.created_at)}</td>
                <td>{duration(d.started_at, d.finished_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {shown ? <DeploymentDetail appId={appId} deployment={shown} onStarted={setChosen} /> : null}
    </div>
  );
}

/** The build log: what is stored, then live lines from the app's log stream (server-sent
 * events) while the deployment is under way; the stored log again once it ends. If the stream
 * cannot be opened, the stored log is polled instead. */
export function useBuildLog(appId: number, deploymentId: number, active: boolean): string | undefined {
  const [live, setLive] = useState<string[]>([]);
  const [streaming, setStreaming] = useState(false);
  const stored = useQuery({
    queryKey: keys.buildLog(deploymentId),
    queryFn: () => call(api.GET("/api/deployments/{id}/log", { params: { path: { id: deploymentId } } })),
    refetchInterval: active && !streaming ? 2000 : false,
  });
  const client = useQueryClient();
  useEffect(() => {
    setLive([]);
    if (!active) {
      void client.invalidateQueries({ queryKey: keys.buildLog(deploymentId) });
      return;
    }
    const source = new EventSource(`/api/apps/${appId}/logs/stream`);
    source.onopen = () => setStreaming(true);
    source.onerror = () => setStreaming(false);
    source.addEventListener("build", (event: MessageEvent<string>) => {
      try {
        const line = JSON.parse(event.data) as { deployment_id?: number | null; line: string };
        if (line.deployment_id === deploymentId) setLive((lines) => [...lines, line.line]);
      } catch {
        /* a malformed event is skipped */
      }
    });
    return () => source.close();
  }, [appId, deploymentId, active, client]);
  if (stored.data === undefined) return live.length ? live.join("\n") : undefined;
  return live.length ? `${stored.data.log}${stored.data.log.endsWith("\n") || !stored.data.log ? "" : "\n"}${live.join("\n")}` : stored.data.log;
}

/** A deployment that ran and was replaced can be rolled back to: its image runs again (built
 * again from its commit if the worker no longer keeps it). */
const canRollBackTo = (d: Deployment) => d.status === "superseded" && Boolean(d.image_id);

function DeploymentDetail({
  appId,
  deployment,
  onStarted,
}: {
  appId: number;
  deployment: Deployment;
  onStarted: (id: number) => void;
}) {
  const active = isActive(deployment.status);
  const client = useQueryClient();
  const [error, setError] = useState<unknown>(null);
  const [rolling, setRolling] = useState(false);
  useEffect(() => setError(null), [deployment.id]);
  const log = useBuildLog(appId, deployment.id, active);
  const bottom = useRef<HTMLPreElement>(null);
  useEffect(() => {
    if (active && bottom.current) bottom.current.scrollTop = bottom.current.scrollHeight;
  }, [log, active]);
  return (
    <div className="card">
      <div className="page-head">
        <h2>Deployment #{deployment.id}</h2>
        {active ? (
          <Button
            kind="danger"
            onClick={() => {
              call(api.POST("/api/deployments/{id}/cancel", { params: { path: { id: deployment.id } } }))
                .then(() => client.invalidateQueries({ queryKey: keys.deployments(appId) }))
                .catch(setError);
            }}
          >
            Cancel
          </Button>
        ) : null}
        {canRollBackTo(deployment) ? (
          <Button
            disabled={rolling}
            onClick={() => {
              setRolling(true);
              setError(null);
              call(api.POST("/api/apps/{id}/rollback", { params: { path: { id: appId } }, body: { deployment_id: deployment.id } }))
                .then(async (started) => {
                  await client.invalidateQueries({ queryKey: keys.deployments(appId) });
                  onStarted(started.id);
                })
                .catch(setError)
                .finally(() => setRolling(false));
            }}
          >
            {rolling ? "Rolling back…" : `Roll back to #${deployment.id}`}
          </Button>
        ) : null}
      </div>
      {deployment.rollback_of ? <p className="muted">A rollback to deployment #{deployment.rollback_of}.</p> : null}
      <Stepper status={deployment.status} />
      {deployment.error ? (
        <div className="note note-error" role="alert">
          {deployment.error}
        </div>
      ) : null}
      <ErrorNote error={error} />
      <h3>Build log</h3>
      <pre className="log" ref={bottom} aria-live={active ? "polite" : "off"} data-testid="build-log">
        {log || (active ? "Waiting for the first lines…" : "No build output.")}
      </pre>
    </div>
  );
}
