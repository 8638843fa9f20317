import { useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { ApiError, type Domain, api, call } from "../../api/client";
import { keys } from "../../api/queries";
import { Button, CopyButton, Empty, ErrorNote, Field, Spinner, Status, when } from "../../ui/ui";

/** `/apps/:id/domains`: add a domain, publish its TXT record, verify. */
export function Domains({ appId }: { appId: number }) {
  const path = { params: { path: { id: appId } } };
  const domains = useQuery({ queryKey: keys.domains(appId), queryFn: () => call(api.GET("/api/apps/{id}/domains", path)) });
  const [hostname, setHostname] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const client = useQueryClient();
  const refresh = () => client.invalidateQueries({ queryKey: keys.domains(appId) });
  const add = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    call(api.POST("/api/apps/{id}/domains", { ...path, body: { hostname } }))
      .then(() => {
        setHostname("");
        return refresh();
      })
      .catch(setError)
      .finally(() => setBusy(false));
  };
  const fieldError = error instanceof ApiError && (error.field === "hostname" || error.code === "conflict") ? error.message : undefined;
  return (
    <div className="stack">
      <form className="card form inline-form" onSubmit={add}>
        <Field label="Add a domain" name="hostname" value={hostname} onChange={setHostname} placeholder="www.example.com" error={fieldError} required />
        <Button type="submit" kind="primary" busy={busy}>
          Add
        </Button>
      </form>
      {error && !fieldError ? <ErrorNote error={error} /> : null}
      {domains.isPending ? <Spinner label="Loading domains…" /> : null}
      <ErrorNote error={domains.error} />
      {domains.data?.length === 0 ? (
        <Empty title="No custom domains">
          <p>Add one above; you will be shown a TXT record to publish to prove it is yours.</p>
        </Empty>
      ) : null}
      {domains.data?.map((d) => <DomainCard key={d.hostname} appId={appId} domain={d} onChange={refresh} />)}
    </div>
  );
}

function DomainCard({ appId, domain, onChange }: { appId: number; domain: Domain; onChange: () => Promise<unknown> }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const path = { params: { path: { id: appId, hostname: domain.hostname } } };
  return (
    <article className="card" aria-label={domain.hostname}>
      <div className="page-head">
        <h3 className="mono">{domain.hostname}</h3>
        <Status status={domain.status} />
      </div>
      {domain.status === "pending_verification" ? (
        <>
          <p>Publish this DNS record, then verify. The claim lapses {when(domain.expires_at)} unless verified.</p>
          <dl className="facts record">
            <dt>Type</dt>
            <dd className="mono">{domain.verification.type}</dd>
            <dt>Name</dt>
            <dd className="mono">
              {domain.verification.name} <CopyButton text={domain.verification.name} label="record name" />
            </dd>
            <dt>Value</dt>
            <dd className="mono">
              {domain.verification.value} <CopyButton text={domain.verification.value} label="record value" />
            </dd>
          </dl>
        </>
      ) : (
        <p>Verified {when(domain.verified_at)}; requests for it reach this app.</p>
      )}
      {domain.certificate ? (
        <p role="status">
          {domain.certificate.status === "issued"
            ? `Certificate issued, valid until ${when(domain.certificate.not_after)}; renewed 30 days before.`
            : domain.certificate.status === "pending"
              ? "Certificate being issued…"
              : `The certificate could not be issued: ${domain.certificate.error ?? "no reason given"}. It is tried again automatically.`}
        </p>
      ) : null}
      {domain.cloudflare ? (
        <div>
          <h4>Cloudflare</h4>
          <p>
            Hostname {domain.cloudflare.status ?? "pending"}, certificate {domain.cloudflare.ssl_status ?? "pending"}.
          </p>
          {domain.cloudflare.records.map((r) => (
            <p key={`${r.name}-${r.value}`} className="mono">
              {r.type} {r.name} {r.value}
            </p>
          ))}
        </div>
      ) : null}
      <ErrorNote error={error} />
      <div className="actions">
        {domain.status === "pending_verification" ? (
          <Button
            kind="primary"
            busy={busy}
            onClick={() => {
              setBusy(true);
              setError(null);
              call(api.POST("/api/apps/{id}/domains/{hostname}/verify", path))
                .then(onChange)
                .catch(setError)
                .finally(() => setBusy(false));
            }}
          >
            Verify
          </Button>
        ) : null}
        <Button
          kind="danger"
          onClick={() => {
            call(api.DELETE("/api/apps/{id}/domains/{hostname}", path)).then(onChange).catch(setError);
          }}
        >
          Remove
        </Button>
      </div>
    </article>
  );
}
