import { useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Redirect, useLocation, useSearch } from "wouter";
import { ApiError, api, call } from "../api/client";
import { usePlatform } from "../api/queries";
import { Button, ErrorNote, Field } from "../ui/ui";
import { LoginText, SIGN_IN_ERRORS } from "./static";

/** `/login`: Google (when configured) and, in single-machine mode, the dev sign-in. */
export function LoginPage() {
  const platform = usePlatform();
  const search = new URLSearchParams(useSearch());
  const code = search.get("error");
  const signIn = platform.data?.sign_in;
  if (platform.data?.signed_in && !code) return <Redirect to="/apps" replace />;
  return (
    <LoginText>
      {code ? (
        <div className="note note-error" role="alert">
          {SIGN_IN_ERRORS[code] ?? `The sign-in failed (${code}). Start again.`}
        </div>
      ) : null}
      {signIn?.oidc !== false ? (
        <p>
          <a className="btn btn-primary" href="/api/auth/google/login">
            Sign in with Google
          </a>
        </p>
      ) : (
        <p className="muted">Sign-in with Google is not configured on this installation.</p>
      )}
      {signIn?.dev_login ? <DevSignIn /> : null}
    </LoginText>
  );
}

/** Posting a sign-in form: on success every query is refreshed and the apps open; on failure
 * `onError` decides (the default shows the error). */
function useSignIn<T>(post: () => Promise<T>, onError?: (error: unknown) => boolean) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [, navigate] = useLocation();
  const client = useQueryClient();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    post()
      .then(async () => {
        await client.invalidateQueries();
        navigate("/apps");
      })
      .catch((err: unknown) => {
        setBusy(false);
        if (!onError?.(err)) setError(err);
      });
  };
  return { submit, error, busy };
}

function DevSignIn() {
  const [email, setEmail] = useState("");
  const { submit, error, busy } = useSignIn(() => call(api.POST("/api/auth/dev-login", { body: { email } })));
  const fieldError = error instanceof ApiError && error.field === "email" ? error.detail : undefined;
  return (
    <form className="card" onSubmit={submit} aria-labelledby="dev-title">
      <h2 id="dev-title">Dev sign-in</h2>
      <p className="muted">Single-machine mode: sign in with any email address, no password.</p>
      <Field label="Email" name="email" type="email" value={email} onChange={setEmail} error={fieldError} required autoComplete="email" />
      {error && !fieldError ? <ErrorNote error={error} /> : null}
      <Button type="submit" kind="primary" busy={busy}>
        Sign in
      </Button>
    </form>
  );
}

/** `/login/2fa`: the second step after the provider, with the `wh_2fa` cookie. */
export function SecondFactorPage() {
  const [code, setCode] = useState("");
  const [, navigate] = useLocation();
  // An expired or missing challenge is a sign-in to start again, not a wrong code.
  const { submit, error, busy } = useSignIn(
    () => call(api.POST("/api/auth/totp", { body: { code } })),
    (err) => {
      const restart = err instanceof ApiError && err.status === 401 && err.code === "unauthorized";
      if (restart) navigate("/login?error=bad_state");
      return restart;
    },
  );
  return (
    <LoginText>
      <form className="card" onSubmit={submit}>
        <h2>Two-factor authentication</h2>
        <Field
          label="Code from your authenticator app (or a recovery code)"
          name="code"
          value={code}
          onChange={setCode}
          autoComplete="one-time-code"
          required
        />
        <ErrorNote error={error} />
        <Button type="submit" kind="primary" busy={busy}>
          Continue
        </Button>
      </form>
    </LoginText>
  );
}
