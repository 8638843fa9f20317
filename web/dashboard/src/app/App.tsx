import { useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useEffect, useState } from "react";
import { Link, Redirect, Route, Switch, useLocation } from "wouter";
import { ApiError, api, call } from "../api/client";
import { useMe, usePlatform } from "../api/queries";
import { Account } from "../features/account/Account";
import { AlertsPage } from "../features/alerts/Alerts";
import { AppPage } from "../features/apps/AppPage";
import { AppsList } from "../features/apps/AppsList";
import { NewApp } from "../features/apps/NewApp";
import { UsagePage } from "../features/usage/Usage";
import { LoginPage, SecondFactorPage } from "../pages/Login";
import { PlansPage } from "../pages/Plans";
import { HomePage, PrivacyPage, TermsPage } from "../pages/static";
import { ErrorNote, Spinner } from "../ui/ui";
import { type Theme, applyTheme, currentTheme } from "./theme";

export function App() {
  return (
    <Switch>
      <Route path="/" component={Home} />
      <Route path="/login" component={LoginPage} />
      <Route path="/login/2fa" component={SecondFactorPage} />
      <Route path="/plans" component={PlansPage} />
      <Route path="/privacy" component={PrivacyPage} />
      <Route path="/terms" component={TermsPage} />
      <Route>
        <SignedIn>
          <Switch>
            <Route path="/apps" component={AppsList} />
            <Route path="/apps/new" component={NewApp} />
            <Route path="/apps/:id" nest>
              {(params) => <AppPage id={Number(params.id)} />}
            </Route>
            <Route path="/usage" component={UsagePage} />
            <Route path="/alerts" component={AlertsPage} />
            <Route path="/account" component={Account} />
            <Route>
              <h1>Not found</h1>
              <p>
                There is no page here. <Link href="/apps">Your apps</Link>
              </p>
            </Route>
          </Switch>
        </SignedIn>
      </Route>
    </Switch>
  );
}

/** `/`: the landing page signed out, the apps signed in. */
function Home() {
  const platform = usePlatform();
  if (platform.data?.signed_in) return <Redirect to="/apps" replace />;
  return <HomePage />;
}

/** The signed-in frame: navigation, theme, sign-out. Signed out, it sends you to `/login`. */
function SignedIn({ children }: { children: ReactNode }) {
  const me = useMe();
  const [, navigate] = useLocation();
  const unauthorized = me.error instanceof ApiError && me.error.status === 401;
  useEffect(() => {
    if (unauthorized) navigate("/login", { replace: true });
  }, [unauthorized, navigate]);
  if (me.isPending || unauthorized) return <Spinner label="Loading…" />;
  if (me.error) return <ErrorNote error={me.error} />;
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link className="brand" href="/apps">
          WiseHosting
        </Link>
        <nav aria-label="Main" className="mainnav">
          <NavLink href="/apps">Apps</NavLink>
          <NavLink href="/usage">Usage</NavLink>
          <NavLink href="/alerts">Alerts</NavLink>
          <NavLink href="/account">Account</NavLink>
        </nav>
        <div className="topbar-end">
          <ThemePicker saved={me.data.user.theme} />
          <SignOut email={me.data.user.email} />
        </div>
      </header>
      <main id="main" className="main">
        {children}
      </main>
    </div>
  );
}

function NavLink({ href, children }: { href: string; children: ReactNode }) {
  const [location] = useLocation();
  const active = location === href || location.startsWith(`${href}/`);
  return (
    <Link href={href} className={active ? "active" : undefined} aria-current={active ? "page" : undefined}>
      {children}
    </Link>
  );
}

/** Light, dark or the system's: kept in this browser at once (no flash on the next load) and
 * saved for the user (other browsers follow it until they choose their own). */
function ThemePicker({ saved }: { saved: string }) {
  const [theme, setTheme] = useState<Theme>(currentTheme());
  useEffect(() => {
    if (localStorage.getItem("wh-theme") === null && (saved === "light" || saved === "dark")) {
      setTheme(saved);
      applyTheme(saved);
    }
  }, [saved]);
  return (
    <label className="theme-picker">
      <span className="visually-hidden">Theme</span>
      <select
        value={theme}
        onChange={(e) => {
          const next = e.target.value as Theme;
          setTheme(next);
          applyTheme(next);
          void call(api.PUT("/api/account/theme", { body: { theme: next } })).catch(() => undefined);
        }}
      >
        <option value="system">System theme</option>
        <option value="light">Light</option>
        <option value="dark">Dark</option>
      </select>
    </label>
  );
}

function SignOut({ email }: { email: string }) {
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const [error, setError] = useState<unknown>(null);
  return (
    <span className="signout">
      <span className="who" title={email}>
        {email}
      </span>
      <button
        type="button"
        className="btn btn-plain"
        onClick={() => {
          call(api.POST("/api/auth/logout"))
            .then(() => {
              client.clear();
              navigate("/login");
            })
            .catch(setError);
        }}
      >
        Sign out
      </button>
      {error ? <ErrorNote error={error} /> : null}
    </span>
  );
}
