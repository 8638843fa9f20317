// The pages readable without JavaScript (SPEC §14.2), rendered to HTML at build time
// (`prerender.tsx`) and by the SPA alike. No data from the API in here.
import type { ReactNode } from "react";

function Frame({ children }: { children: ReactNode }) {
  return (
    <div className="public">
      <header className="public-header">
        <a className="brand" href="/">
          WiseHosting
        </a>
        <nav aria-label="Site">
          <a href="/plans">Plans</a>
          <a href="/login">Sign in</a>
        </nav>
      </header>
      <main className="public-main">{children}</main>
      <footer className="public-footer">
        <a href="/privacy">Privacy</a> · <a href="/terms">Terms</a> · <a href="/api/docs/">API reference</a>
      </footer>
    </div>
  );
}

export function HomePage() {
  return (
    <Frame>
      <h1>Push a repository. Get a running app.</h1>
      <p className="lead">
        WiseHosting builds your repository into a container, runs it with zero downtime on every deploy, and gives it
        its own URL — on your own servers.
      </p>
      <ul className="points">
        <li>Deploys that never get stuck: every step is visible, and a failed deploy leaves the running version serving.</li>
        <li>Live build and runtime logs, environment variables sealed at rest, custom domains verified by DNS.</li>
        <li>API tokens with scopes for scripts, and an OpenAPI reference for everything the dashboard does.</li>
      </ul>
      <p>
        <a className="btn btn-primary" href="/login">
          Sign in
        </a>
      </p>
    </Frame>
  );
}

export const SIGN_IN_ERRORS: Record<string, string> = {
  bad_state: "The sign-in expired or was started in another browser. Start again here.",
  code_rejected: "The provider refused the sign-in code (it may have been used already). Start again.",
  invalid_token: "The provider's answer could not be verified, so you were not signed in. Start again.",
  email_unverified: "Your provider has not verified your email address. Verify it there, then sign in.",
  email_taken: "Another account already uses this email address. Sign in with that account.",
  account_disabled: "This account is disabled. Contact the operators of this installation.",
  provider_error: "The sign-in was cancelled at the provider.",
  provider_unavailable: "The sign-in provider cannot be reached right now. Try again in a minute.",
  server_error: "Something went wrong on our side; it has been logged. Try again.",
  bad_request: "The sign-in link was incomplete. Start again.",
};

export function LoginText({ children }: { children?: ReactNode }) {
  return (
    <Frame>
      <h1>Sign in to WiseHosting</h1>
      <p className="lead">Sign in with your Google account. If you turned on two-factor authentication, you will be asked for a code next.</p>
      {children ?? (
        <p>
          <a className="btn btn-primary" href="/api/auth/google/login">
            Sign in with Google
          </a>
        </p>
      )}
    </Frame>
  );
}

export function PlansText({ children }: { children?: ReactNode }) {
  return (
    <Frame>
      <h1>Plans</h1>
      <p className="lead">
        Every plan limits how many apps you run, their memory and CPU, custom domains, and deploys a day. Limits are
        checked when you create an app or deploy; going over one is refused with the limit's name.
      </p>
      {children ?? <p>The plans of this installation and their limits are listed here once the page loads.</p>}
    </Frame>
  );
}

export function PrivacyPage() {
  return (
    <Frame>
      <h1>Privacy</h1>
      <p>
        This installation keeps what it needs to run your apps: your email address and name from your sign-in
        provider, your apps, their settings and logs, and an audit trail of your account's actions with the address
        they came from.
      </p>
      <p>
        Environment variables and repository tokens are encrypted at rest. Session and API tokens are stored only as
        hashes. Nothing is shared with third parties beyond the services the operators configure (your sign-in
        provider, and DNS or certificate services for custom domains).
      </p>
    </Frame>
  );
}

export function TermsPage() {
  return (
    <Frame>
      <h1>Terms</h1>
      <p>
        You may run on this installation what you have the right to run. The operators may stop apps that harm others
        or break the law, and will tell you why.
      </p>
      <p>
        The service is provided as is. Keep your own backups of your repositories and data; deleting an app removes
        its containers and images.
      </p>
    </Frame>
  );
}
