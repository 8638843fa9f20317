import { useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api, call } from "../../api/client";
import { keys, useMe } from "../../api/queries";
import { Button, CopyButton, Empty, ErrorNote, Field, Spinner, when } from "../../ui/ui";

/** `/account`: linked git accounts, sessions, two-factor authentication, API tokens, the audit trail. */
export function Account() {
  return (
    <section className="stack">
      <h1>Account</h1>
      <GitAccounts />
      <Sessions />
      <TwoFactor />
      <Tokens />
      <Audit />
    </section>
  );
}

const PROVIDER_NAMES: Record<string, string> = {
  github: "GitHub",
  gitlab: "GitLab",
  bitbucket: "Bitbucket",
  codeberg: "Codeberg",
};

/** Why a link came back without one (`/account?git_error=<code>`). */
const LINK_ERRORS: Record<string, string> = {
  bad_state: "The link was begun in another session or took too long; link again from here.",
  bad_request: "The provider came back without an answer; link again.",
  provider_error: "The provider refused (or you declined); link again to retry.",
  code_rejected: "The provider did not accept the authorization; link again.",
  provider_unavailable: "The provider could not be reached; try again in a moment.",
  token_rejected: "The provider refused the new token; link again.",
  server_error: "Something went wrong on our side; it has been logged.",
};

/** Git provider accounts: link (through the provider's consent page), see, unlink. */
function GitAccounts() {
  const me = useMe();
  const linkable = me.data?.platform.git_providers ?? [];
  const linked = me.data?.git_providers ?? [];
  const client = useQueryClient();
  const [error, setError] = useState<unknown>(null);
  const [note, setNote] = useState<string | null>(null);
  const failed = new URLSearchParams(window.location.search).get("git_error");
  if (linkable.length === 0 && linked.length === 0) return null;
  const unlink = (provider: string) =>
    call(api.DELETE("/api/git/{provider}", { params: { path: { provider } } }))
      .then((r) => {
        setNote(
          r.revoked
            ? `Unlinked; ${PROVIDER_NAMES[provider] ?? provider} revoked the token.`
            : `Unlinked. Remove WiseHosting's access in your ${PROVIDER_NAMES[provider] ?? provider} settings too.`,
        );
        return client.invalidateQueries({ queryKey: keys.me });
      })
      .catch(setError);
  return (
    <div className="card" aria-labelledby="git-title">
      <h2 id="git-title">Git accounts</h2>
      <p className="muted">Link an account to pick repositories when you create an app, deploy private ones, and get push-to-deploy set up for you. Linked accounts never sign you in.</p>
      {failed ? <p className="field-error" role="alert">{LINK_ERRORS[failed] ?? "The link did not complete; try again."}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      <ErrorNote error={error} />
      <ul className="rows">
        {linkable.map((provider) => {
          const link = linked.find((l) => l.provider === provider);
          const name = PROVIDER_NAMES[provider] ?? provider;
          return (
            <li key={provider} className="row">
              <span>
                <strong>{name}</strong>
                <span className="muted"> · {link ? `${link.login}, linked ${when(link.linked_at)}` : "not linked"}</span>
              </span>
              {link ? (
                <Button kind="danger" label={`Unlink ${name}`} onClick={() => unlink(provider)}>
                  Unlink
                </Button>
              ) : (
                <a className="btn btn-primary" href={`/api/git/${provider}/link`}>
                  Link {name}
                </a>
              )}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function Sessions() {
  const sessions = useQuery({ queryKey: keys.sessions, queryFn: () => call(api.GET("/api/account/sessions")) });
  const client = useQueryClient();
  const [error, setError] = useState<unknown>(null);
  const refresh = () => client.invalidateQueries({ queryKey: keys.sessions });
  return (
    <div className="card" aria-labelledby="sessions-title">
      <div className="page-head">
        <h2 id="sessions-title">Sessions</h2>
        <Button onClick={() => call(api.POST("/api/account/sessions/revoke-others")).then(refresh).catch(setError)}>Sign out everywhere else</Button>
      </div>
      <ErrorNote error={error ?? sessions.error} />
      {sessions.isPending ? <Spinner label="Loading sessions…" /> : null}
      <ul className="rows">
        {sessions.data?.map((s) => (
          <li key={s.id} className="row">
            <span>
              <strong>{s.current ? "This browser" : (s.user_agent ?? "Unknown browser").slice(0, 60)}</strong>
              <span className="muted">
                {" "}
                · {s.ip ?? "unknown address"} · signed in {when(s.created_at)} · last seen {when(s.last_seen_at)}
              </span>
            </span>
            {s.current ? null : (
              <Button
                kind="danger"
                label={`Revoke the session from ${s.ip ?? "unknown address"}`}
                onClick={() => call(api.DELETE("/api/account/sessions/{id}", { params: { path: { id: s.id } } })).then(refresh).catch(setError)}
              >
                Revoke
              </Button>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

function TwoFactor() {
  const me = useMe();
  const client = useQueryClient();
  const [enrolment, setEnrolment] = useState<{ secret: string; qr_svg: string } | null>(null);
  const [code, setCode] = useState("");
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const on = me.data?.user.totp_enabled ?? false;
  const done = () => {
    setCode("");
    setError(null);
    return client.invalidateQueries({ queryKey: keys.me });
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (on) {
      call(api.POST("/api/account/totp/disable", { body: { code } })).then(done).catch(setError);
    } else {
      call(api.POST("/api/account/totp/confirm", { body: { code } }))
        .then((r) => {
          setRecovery(r.recovery_codes);
          setEnrolment(null);
          return done();
        })
        .catch(setError);
    }
  };
  return (
    <div className="card">
      <h2>Two-factor authentication</h2>
      <p>{on ? "On: signing in asks for a code from your authenticator app." : "Off: signing in needs only your Google account."}</p>
      {recovery ? (
        <div className="note" role="status">
          <p>
            <strong>Recovery codes</strong> — each works once in place of a code. They are shown only now; keep them safe.
          </p>
          <pre className="mono">{recovery.join("\n")}</pre>
          <CopyButton text={recovery.join("\n")} label="recovery codes" />
        </div>
      ) : null}
      {!on && !enrolment ? (
        <Button
          onClick={() => {
            call(api.POST("/api/account/totp/enroll")).then(setEnrolment).catch(setError);
          }}
        >
          Turn on
        </Button>
      ) : null}
      {enrolment ? (
        <div>
          <p>Scan this code with your authenticator app, or type the secret, then enter the code it shows.</p>
          <img className="qr" alt="QR code of the authenticator secret" src={`data:image/svg+xml;base64,${btoa(enrolment.qr_svg)}`} width={200} height={200} />
          <p className="mono">{enrolment.secret}</p>
        </div>
      ) : null}
      {on || enrolment ? (
        <form className="form inline-form" onSubmit={submit}>
          <Field label={on ? "Code to turn it off" : "Code from the app"} name="code" value={code} onChange={setCode} autoComplete="one-time-code" />
          <Button type="submit" kind={on ? "danger" : "primary"}>
            {on ? "Turn off" : "Confirm"}
          </Button>
        </form>
      ) : null}
      <ErrorNote error={error} />
    </div>
  );
}

function Tokens() {
  const tokens = useQuery({ queryKey: keys.tokens, queryFn: () => call(api.GET("/api/account/tokens")) });
  const client = useQueryClient();
  const [name, setName] = useState("");
  const [scope, setScope] = useState("deploy");
  const [days, setDays] = useState("90");
  const [made, setMade] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const refresh = () => client.invalidateQueries({ queryKey: keys.tokens });
  const create = (e: FormEvent) => {
    e.preventDefault();
    const body = { name, scopes: [scope], expires_in_days: days ? Number(days) : null };
    call(api.POST("/api/account/tokens", { body }))
      .then((t) => {
        setMade(t.token);
        setName("");
        setError(null);
        return refresh();
      })
      .catch(setError);
  };
  return (
    <div className="card">
      <h2>API tokens</h2>
      <p className="muted">
        For scripts and the CLI: <span className="mono">Authorization: Bearer wht_…</span>. <em>read</em> reads, <em>deploy</em> also deploys and
        restarts, <em>write</em> does every app action. No token manages tokens, sessions or 2FA.
      </p>
      {made ? (
        <div className="note" role="status">
          <p>Your new token — shown only now:</p>
          <p className="mono break">{made}</p>
          <CopyButton text={made} label="token" />
        </div>
      ) : null}
      <form className="form inline-form" onSubmit={create}>
        <Field label="Name" name="token-name" value={name} onChange={setName} placeholder="ci deploys" required />
        <div className="field">
          <label htmlFor="token-scope">Scope</label>
          <select id="token-scope" value={scope} onChange={(e) => setScope(e.target.value)}>
            <option value="read">read</option>
            <option value="deploy">deploy</option>
            <option value="write">write</option>
          </select>
        </div>
        <Field label="Expires in days (empty: never)" name="token-days" type="number" value={days} onChange={setDays} />
        <Button type="submit" kind="primary">
          Create token
        </Button>
      </form>
      <ErrorNote error={error ?? tokens.error} />
      {tokens.data?.length === 0 ? <p className="muted">No tokens.</p> : null}
      <ul className="rows">
        {tokens.data?.map((t) => (
          <li key={t.id} className="row">
            <span>
              <strong>{t.name}</strong>
              <span className="muted">
                {" "}
                · {t.scopes.join(", ")} · created {when(t.created_at)} · {t.expires_at ? `expires ${when(t.expires_at)}` : "never expires"} · last used{" "}
                {when(t.last_used_at)}
              </span>
            </span>
            <Button
              kind="danger"
              label={`Revoke the token ${t.name}`}
              onClick={() => call(api.DELETE("/api/account/tokens/{id}", { params: { path: { id: t.id } } })).then(refresh).catch(setError)}
            >
              Revoke
            </Button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function Audit() {
  const [before, setBefore] = useState<number | null>(null);
  const page = useQuery({
    queryKey: [...keys.audit, before],
    queryFn: () => call(api.GET("/api/account/audit", { params: { query: { limit: 20, ...(before ? { before } : {}) } } })),
  });
  return (
    <div className="card">
      <h2>Audit log</h2>
      <ErrorNote error={page.error} />
      {page.data?.events.length === 0 ? (
        <Empty title="Nothing yet">
          <p>Sign-ins, deploys and changes to your account appear here.</p>
        </Empty>
      ) : null}
      <ul className="rows">
        {page.data?.events.map((e) => (
          <li key={e.id} className="row">
            <span className="mono">{e.action}</span>
            <span className="muted">
              {when(e.at)} · {e.ip ?? "—"}
            </span>
          </li>
        ))}
      </ul>
      <div className="actions">
        {before ? <Button onClick={() => setBefore(null)}>Newest</Button> : null}
        {page.data?.next ? <Button onClick={() => setBefore(page.data?.next ?? null)}>Older</Button> : null}
      </div>
    </div>
  );
}
