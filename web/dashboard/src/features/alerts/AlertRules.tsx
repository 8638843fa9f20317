import { useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { ApiError, api, call } from "../../api/client";
import { keys } from "../../api/queries";
import { Button, ErrorNote, Field, Spinner } from "../../ui/ui";

const KINDS: { kind: string; label: string; unit?: string; example?: string }[] = [
  { kind: "cpu", label: "CPU", unit: "% of one core", example: "80" },
  { kind: "memory", label: "Memory", unit: "% of the limit", example: "90" },
  { kind: "network", label: "Network", unit: "bytes per second", example: "10000000" },
  { kind: "restarts", label: "Restarts", unit: "per hour", example: "5" },
  { kind: "offline", label: "Worker offline" },
  { kind: "crashloop", label: "Crash loop" },
  { kind: "deployment_failed", label: "Failed deploy" },
  { kind: "certificate_failing", label: "Certificate failing" },
];

/** `/apps/:id/alerts`: the app's rules; adding a kind the app has replaces that rule. */
export function AlertRules({ appId }: { appId: number }) {
  const path = { params: { path: { id: appId } } };
  const rules = useQuery({ queryKey: keys.rules(appId), queryFn: () => call(api.GET("/api/apps/{id}/alert-rules", path)) });
  const client = useQueryClient();
  const [kind, setKind] = useState("cpu");
  const [threshold, setThreshold] = useState("");
  const [sustain, setSustain] = useState("5");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const meta = KINDS.find((k) => k.kind === kind);
  const refresh = () => client.invalidateQueries({ queryKey: keys.rules(appId) });
  const add = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      kind,
      threshold: meta?.unit ? Number(threshold) : null,
      sustain_minutes: meta?.unit ? Number(sustain) : 0,
    };
    call(api.POST("/api/apps/{id}/alert-rules", { ...path, body }))
      .then(() => {
        setThreshold("");
        return refresh();
      })
      .catch(setError)
      .finally(() => setBusy(false));
  };
  const remove = (rid: number) =>
    call(api.DELETE("/api/apps/{id}/alert-rules/{rid}", { params: { path: { id: appId, rid } } }))
      .then(refresh)
      .catch(setError);
  const fieldError = (f: string) => (error instanceof ApiError && error.field === f ? error.message : undefined);
  return (
    <div className="stack">
      <form className="card form" onSubmit={add} aria-label="Add or replace a rule">
        <div className="field">
          <label htmlFor="rule-kind">Alert when</label>
          <select id="rule-kind" value={kind} onChange={(e) => setKind(e.target.value)}>
            {KINDS.map((k) => (
              <option key={k.kind} value={k.kind}>
                {k.label}
              </option>
            ))}
          </select>
        </div>
        {meta?.unit ? (
          <>
            <Field label={`Stays over (${meta.unit})`} name="threshold" type="number" value={threshold} onChange={setThreshold} placeholder={meta.example} error={fieldError("threshold")} required />
            <Field label="For (minutes)" name="sustain" type="number" value={sustain} onChange={setSustain} error={fieldError("sustain_minutes")} hint="It resolves after as long under the threshold." />
          </>
        ) : (
          <p className="field-hint">Fires when it happens and resolves when it is over.</p>
        )}
        <div>
          <Button type="submit" kind="primary" busy={busy}>
            Save rule
          </Button>
        </div>
      </form>
      {error && !fieldError("threshold") && !fieldError("sustain_minutes") ? <ErrorNote error={error} /> : null}
      {rules.isPending ? <Spinner label="Loading rules…" /> : <ErrorNote error={rules.error} />}
      {rules.data ? (
        <ul className="rows card" aria-label="Rules">
          {rules.data.map((r) => (
            <li key={r.id} className="row">
              <span>
                <strong>{KINDS.find((k) => k.kind === r.kind)?.label ?? r.kind}</strong>
                {r.threshold !== null && r.threshold !== undefined
                  ? ` over ${r.threshold} ${KINDS.find((k) => k.kind === r.kind)?.unit ?? ""} for ${r.sustain_minutes} min`
                  : ""}
                {r.firing ? " · firing" : ""}
              </span>
              <Button kind="danger" label={`Delete the ${r.kind} rule`} onClick={() => void remove(r.id)}>
                Delete
              </Button>
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
