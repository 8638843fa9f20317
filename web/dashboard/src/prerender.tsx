// The build-time renderer of the static pages (`scripts/prerender.mjs` writes dist/pages/).
import { renderToString } from "react-dom/server";
import { HomePage, LoginText, PlansText, PrivacyPage, TermsPage } from "./pages/static";

/** Each prerendered path and the file under dist/pages/ the control plane serves for it. */
export const PAGES: Record<string, string> = {
  "/": "home.html",
  "/login": "login.html",
  "/plans": "plans.html",
  "/privacy": "privacy.html",
  "/terms": "terms.html",
};

const TITLES: Record<string, string> = {
  "/": "WiseHosting",
  "/login": "Sign in · WiseHosting",
  "/plans": "Plans · WiseHosting",
  "/privacy": "Privacy · WiseHosting",
  "/terms": "Terms · WiseHosting",
};

export function render(path: string): { html: string; title: string } {
  const page =
    path === "/login" ? <LoginText /> : path === "/plans" ? <PlansText /> : path === "/privacy" ? <PrivacyPage /> : path === "/terms" ? <TermsPage /> : <HomePage />;
  return { html: renderToString(page), title: TITLES[path] ?? "WiseHosting" };
}
