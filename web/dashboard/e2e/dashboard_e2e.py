"""End-to-end test of the dashboard in real Chromium against a running `wisehosting dev`.

Run by scripts/e2e.sh, which starts the platform and passes WH_E2E_URL (the dashboard),
WH_E2E_REPO (a local git repository to deploy) and WH_E2E_SHOTS (where screenshots go).
Fails on any console error, page error or failed step; prints the first contentful paint of
/apps as a figure (measured, not asserted).
"""

import json
import os
import re
import sys
import urllib.request

from playwright.sync_api import Page, expect, sync_playwright

BASE = os.environ["WH_E2E_URL"].rstrip("/")
REPO = os.environ["WH_E2E_REPO"]
SHOTS = os.environ["WH_E2E_SHOTS"]
APPS_PORT = os.environ.get("WH_E2E_APPS_PORT", "8080")
EMAIL = "e2e@example.com"
# Who the stand-in provider signs in (scripts/e2e.sh starts it).
GOOGLE_EMAIL = os.environ.get("WH_E2E_GOOGLE_EMAIL", "ada@example.com")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

problems: list[str] = []
# Console errors a step provokes on purpose (the browser logs every 4xx answer), by text.
expected: list[str] = []


def on_console(label: str, m) -> None:
    if m.type == "error" and not any(e in m.text for e in expected):
        problems.append(f"{label} console {m.type}: {m.text}")


def watch(page: Page, label: str) -> None:
    page.on("console", lambda m: on_console(label, m))
    page.on("pageerror", lambda e: problems.append(f"{label} page error: {e}"))


def shot(page: Page, name: str) -> None:
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def no_sideways_scroll(page: Page, where: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        problems.append(f"{where}: the page is {width} px wide at {PHONE['width']} px (sideways scroll)")


def step(text: str) -> None:
    print(f"  · {text}", flush=True)


def main() -> int:
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        desktop = browser.new_context(viewport=DESKTOP)
        page = desktop.new_page()
        watch(page, "desktop")

        step("the static pages are readable and the sign-in page offers Google and the dev sign-in")
        for path in ["/", "/plans", "/privacy", "/terms"]:
            page.goto(BASE + path)
            expect(page.locator("h1")).to_be_visible()
            shot(page, "desktop-home" if path == "/" else f"desktop{path.replace('/', '-')}")
        page.goto(BASE + "/login")
        expect(page.get_by_role("heading", name="Dev sign-in")).to_be_visible()
        expect(page.get_by_role("link", name="Sign in with Google")).to_be_visible()
        shot(page, "desktop-login")

        step("signing in with Google (a local stand-in provider), then out")
        page.get_by_role("link", name="Sign in with Google").click()
        page.wait_for_url(re.compile(re.escape(BASE) + r"/(apps)?$"))
        page.goto(BASE + "/apps")
        expect(page.get_by_text(GOOGLE_EMAIL)).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r".*/login$"))
        expect(page.get_by_role("link", name="Sign in with Google")).to_be_visible()

        step("signing in through the page")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(BASE + "/apps")
        expect(page.get_by_role("heading", name="No apps yet")).to_be_visible()
        shot(page, "desktop-apps-empty")

        step("linking a GitHub account (a local stand-in) on the account page")
        page.goto(BASE + "/account")
        page.get_by_role("link", name="Link GitHub").click()
        page.wait_for_url(BASE + "/account")
        expect(page.get_by_text(re.compile(r"ada-github, linked"))).to_be_visible()
        expect(page.get_by_role("button", name="Unlink GitHub")).to_be_visible()
        shot(page, "desktop-account-git")

        step("creating an app from a repository picked from the linked account")
        page.goto(BASE + "/apps")
        page.get_by_role("link", name="New app").first.click()
        expect(page.get_by_label("Source")).to_have_value("github")
        page.get_by_label("Repository", exact=True).select_option(label="ada-github/e2e-site (private)")
        expect(page.get_by_label("Name")).to_have_value("e2e-site")
        page.get_by_label("Name").fill("e2e site")
        expect(page.get_by_label("Branch")).to_have_value("main")
        page.get_by_label("Port the app listens on").fill("8080")
        shot(page, "desktop-new-app")
        page.get_by_role("button", name="Create and deploy").click()
        page.wait_for_url(re.compile(r".*/apps/\d+/deployments$"))
        app_path = page.url.removeprefix(BASE).removesuffix("/deployments")

        step("watching the build log until the deployment runs")
        expect(page.get_by_test_id("build-log")).not_to_have_text("Waiting for the first lines…", timeout=60_000)
        expect(page.locator("tbody tr").first.locator(".status")).to_have_text("running", timeout=180_000)
        expect(page.get_by_test_id("build-log")).not_to_be_empty()
        shot(page, "desktop-deployments")

        step("opening the app's URL")
        app_url = f"http://e2e-site.localhost:{APPS_PORT}/"
        app_page = desktop.new_page()
        app_page.goto(app_url)
        expect(app_page.locator("body")).to_contain_text("hello from e2e")
        app_page.close()

        step("changing an env var and redeploying")
        page.goto(BASE + app_path + "/env")
        page.get_by_role("button", name="Edit").click()
        page.get_by_label("Variables (.env)").fill("GREETING=hello\n")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Saved 1 variables")
        expect(page.locator(".env-name")).to_have_text(["GREETING"])
        page.get_by_role("button", name="Reveal GREETING").click()
        expect(page.locator(".env-value")).to_have_text(["hello"])
        shot(page, "desktop-env")
        page.goto(BASE + app_path)
        page.get_by_role("button", name="Redeploy").click()
        page.wait_for_url(re.compile(r".*/deployments$"))
        expect(page.locator("tbody tr")).to_have_count(2)
        expect(page.locator("tbody tr").first.locator(".status")).to_have_text("running", timeout=180_000)

        step("rolling back to the first deployment: its image runs again, without a build")
        page.locator("tbody tr").last.get_by_role("button").click()
        page.get_by_role("button", name=re.compile(r"^Roll back to #\d+$")).click()
        expect(page.locator("tbody tr")).to_have_count(3)
        first = page.locator("tbody tr").first
        expect(first).to_contain_text("rollback of #")
        expect(first.locator(".status")).to_have_text("running", timeout=180_000)
        expect(page.get_by_test_id("build-log")).to_contain_text("no build")
        shot(page, "desktop-deployments-rollback")

        step("settings: the health check, HTTPS (HSTS turned on, kept after a reload), and the push webhook with its delivery log")
        page.goto(BASE + app_path + "/settings")
        expect(page.get_by_role("heading", name="Push to deploy")).to_be_visible()
        expect(page.get_by_text(re.compile(r"/v1/webhooks/github/[0-9a-f]{32}"))).to_be_visible()
        expect(page.get_by_text("No deliveries yet.")).to_be_visible()
        page.get_by_label("Path").fill("/index.html")
        page.get_by_role("button", name="Save health check").click()
        expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
        https = page.locator("form", has=page.get_by_role("heading", name="HTTPS"))
        expect(https.get_by_label("Redirect HTTP to HTTPS")).to_be_checked()
        https.get_by_label("Send Strict-Transport-Security").check()
        https.get_by_role("button", name="Save HTTPS settings").click()
        expect(https.get_by_role("status")).to_have_text("Saved.")
        page.reload()
        https = page.locator("form", has=page.get_by_role("heading", name="HTTPS"))
        expect(https.get_by_label("Send Strict-Transport-Security")).to_be_checked()
        expect(https.get_by_label("Redirect HTTP to HTTPS")).to_be_checked()
        shot(page, "desktop-settings")

        step("adding a domain and reading the TXT instructions")
        page.goto(BASE + app_path + "/domains")
        page.get_by_label("Add a domain").fill("www.e2e.example")
        page.get_by_role("button", name="Add").click()
        card = page.get_by_role("article", name="www.e2e.example")
        expect(card).to_contain_text("_wisehosting-challenge.www.e2e.example")
        expect(card).to_contain_text("wisehosting-verify=")
        shot(page, "desktop-domains")

        step("live figures on the Overview")
        page.goto(BASE + app_path)
        live = page.locator(".card", has=page.get_by_role("heading", name="Live"))
        expect(live).to_contain_text("● live", timeout=60_000)
        expect(live).to_contain_text("Memory")
        shot(page, "desktop-overview-live")

        step("alert rules: the defaults, then a CPU rule")
        page.goto(BASE + app_path + "/alerts")
        rules = page.get_by_role("list", name="Rules")
        expect(rules).to_contain_text("Crash loop")
        expect(rules).to_contain_text("Failed deploy")
        page.get_by_label("Alert when").select_option("cpu")
        page.get_by_label("Stays over (% of one core)").fill("80")
        page.get_by_role("button", name="Save rule").click()
        expect(rules).to_contain_text("CPU over 80 % of one core for 5 min")
        shot(page, "desktop-alert-rules")

        step("a webhook to a private address is refused at its field")
        page.goto(BASE + "/alerts")
        expect(page.get_by_role("heading", name="No firing alerts")).to_be_visible()
        page.get_by_label("Endpoint URL").fill("http://127.0.0.1:9/hook")
        expected.append("status of 422")
        page.get_by_role("button", name="Add webhook").click()
        url_field = page.get_by_label("Endpoint URL")
        expect(url_field).to_have_attribute("aria-invalid", "true")
        expect(page.locator(".field-error")).to_contain_text("not a public address")
        expected.remove("status of 422")
        shot(page, "desktop-alerts")

        step("usage against the plan")
        page.goto(BASE + "/usage")
        expect(page.get_by_role("heading", name="This month")).to_be_visible()
        expect(page.get_by_role("article", name="Usage of e2e site")).to_be_visible()

        step("revoking another session")
        body = json.dumps({"email": EMAIL}).encode()
        request = urllib.request.Request(BASE + "/api/auth/dev-login", data=body, headers={"content-type": "application/json"})
        urllib.request.urlopen(request).read()
        page.goto(BASE + "/account")
        revoke = page.get_by_role("button", name=re.compile("^Revoke the session"))
        expect(revoke).to_have_count(1)
        revoke.click()
        expect(revoke).to_have_count(0)
        shot(page, "desktop-account")

        step("every main page at phone width, without sideways scrolling")
        phone = browser.new_context(viewport=PHONE, is_mobile=True, storage_state=desktop.storage_state())
        small = phone.new_page()
        watch(small, "phone")
        for path in ["/apps", app_path, app_path + "/deployments", app_path + "/logs", app_path + "/env", app_path + "/domains", app_path + "/alerts", app_path + "/settings", "/account", "/usage", "/alerts", "/login", "/plans"]:
            small.goto(BASE + path)
            expect(small.locator("h1").first).to_be_visible()
            small.wait_for_load_state("load")
            no_sideways_scroll(small, path)
            shot(small, "phone" + re.sub(r"/\d+", "-app", path).replace("/", "-"))
        for path in [app_path + "/logs", "/usage", "/alerts"]:
            page.goto(BASE + path)
            expect(page.locator("h1").first).to_be_visible()
            shot(page, "desktop" + re.sub(r"/\d+", "-app", path).replace("/", "-"))

        step("deleting the app, confirmed by its name")
        page.goto(BASE + app_path + "/settings")
        page.get_by_label("App name").fill("e2e site")
        page.get_by_role("button", name="Delete app").click()
        page.wait_for_url(BASE + "/apps")
        expect(page.get_by_role("heading", name="No apps yet")).to_be_visible(timeout=60_000)

        step("first contentful paint of /apps (a figure, not a check)")
        fresh = desktop.new_page()
        fresh.goto(BASE + "/apps")
        fresh.wait_for_selector("h1")
        fcp = fresh.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
        print(f"first contentful paint of /apps: {fcp:.0f} ms" if fcp is not None else "first contentful paint: not reported")
        browser.close()

    if problems:
        print("dashboard e2e: problems in the browser:", *problems, sep="\n  ")
        return 1
    print(f"dashboard e2e: passed; screenshots in {SHOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
