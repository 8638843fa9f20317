"""End-to-end test of the admin console in real Chromium: `wisehosting-admin serve` in front
of a running `wisehosting dev` (its internal API, hub and local worker).

Run by scripts/e2e.sh, which passes WH_ADMIN_URL (the console, ending in /admin/),
WH_ADMIN_USER and WH_ADMIN_PASSWORD (a super_admin made with `create-account`), WH_E2E_URL
(the platform's dashboard, where a tenant deploys WH_E2E_REPO first) and WH_E2E_SHOTS. Fails
on any console error, page error, CSP violation or failed step.
"""

import json
import os
import re
import sys
import time
import urllib.request

from playwright.sync_api import Page, expect, sync_playwright

BASE = os.environ["WH_ADMIN_URL"].rstrip("/")  # …/admin
USER = os.environ["WH_ADMIN_USER"]
PASSWORD = os.environ["WH_ADMIN_PASSWORD"]
SHOTS = os.environ["WH_E2E_SHOTS"]
PLATFORM = os.environ["WH_E2E_URL"].rstrip("/")
REPO = os.environ["WH_E2E_REPO"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

problems: list[str] = []
# The browser logs the 401 of the wrong password on purpose.
expected = ["401 (Unauthorized)"]


def watch(page: Page, label: str) -> None:
    def on_console(m) -> None:
        if m.type == "error" and not any(e in m.text for e in expected):
            problems.append(f"{label} console {m.type}: {m.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"{label} page error: {e}"))


def shot(page: Page, name: str) -> None:
    page.screenshot(path=os.path.join(SHOTS, f"admin-{name}.png"), full_page=True)


def step(text: str) -> None:
    print(f"  · {text}", flush=True)


def tenant_app() -> str:
    """A tenant's running app, deployed through the user API: its name."""
    def call(method: str, path: str, body=None, cookie=None):
        headers = {"content-type": "application/json"}
        if cookie:
            headers["cookie"] = cookie
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(PLATFORM + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request) as answer:
            return answer.headers, json.loads(answer.read() or b"null")

    headers, _ = call("POST", "/api/auth/dev-login", {"email": "e2e@example.com"})
    cookie = headers["set-cookie"].split(";")[0]
    _, created = call("POST", "/api/deploy", {"name": "admin e2e", "repo_url": REPO, "port": 8080}, cookie)
    deployment = created["deployment"]["id"]
    deadline = time.time() + 180
    while time.time() < deadline:
        _, d = call("GET", f"/api/deployments/{deployment}", cookie=cookie)
        if d["status"] == "running":
            return created["app"]["name"]
        if d["status"] in ("failed", "cancelled"):
            raise SystemExit(f"the tenant's deployment ended {d['status']}: {d.get('error')}")
        time.sleep(0.5)
    raise SystemExit("the tenant's deployment did not run within 3 minutes")


def main() -> int:
    os.makedirs(SHOTS, exist_ok=True)
    step("a tenant deploys an app through the user API")
    app_name = tenant_app()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        desktop = browser.new_context(viewport=DESKTOP)
        page = desktop.new_page()
        watch(page, "desktop")

        step("signed out, the console's address shows the sign-in form")
        page.goto(BASE + "/")
        expect(page.get_by_role("heading", name="WiseHosting admin")).to_be_visible()
        shot(page, "desktop-login")

        step("a wrong password is refused with the message from the API")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill("certainly not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("do not match an account")

        step("signing in opens the overview with its figures and the deployments chart")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.get_by_text("Apps online")).to_be_visible()
        expect(page.get_by_role("img", name="Deployments per hour over the last day, successes and failures")).to_be_visible()
        expect(page.locator("#who")).to_contain_text(f"{USER} · super_admin")
        shot(page, "desktop-overview")

        step("workers: the local worker is connected and answers podman ps through the hub")
        page.get_by_role("link", name="Workers").click()
        expect(page.get_by_role("heading", name="Workers")).to_be_visible()
        row = page.get_by_role("row").filter(has_text="local")
        expect(row).to_contain_text("connected")
        row.get_by_role("button", name="ps", exact=True).click()
        expect(page.locator("#podman-output")).to_contain_text("# local: ps")
        expect(page.locator("#podman-output")).to_contain_text(re.compile(r"-app\d+-d\d+-"))
        shot(page, "desktop-workers")

        step("apps across tenants: the tenant's app, its figures and logs; pause and unpause it")
        page.get_by_role("link", name="Apps").click()
        expect(page.get_by_role("heading", name="Apps")).to_be_visible()
        page.get_by_role("button", name=app_name).click()
        expect(page.get_by_role("heading", name=app_name, exact=False).last).to_be_visible()
        page.get_by_label("Reason (shown in the audit log)").fill("e2e pause")
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("cell", name="running (paused)").or_(page.get_by_role("cell", name="stopped (paused)"))).to_be_visible()
        shot(page, "desktop-apps")
        page.get_by_role("button", name=app_name).click()
        page.get_by_role("button", name="Unpause").click()
        expect(page.get_by_text("unpause: done.")).to_be_visible()
        page.get_by_role("link", name="Users").click()
        expect(page.get_by_role("heading", name="Users")).to_be_visible()
        expect(page.get_by_role("cell", name="e2e@example.com")).to_be_visible()
        page.get_by_role("searchbox").fill("nobody-matches-this")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_text("No user matches.")).to_be_visible()
        page.get_by_role("searchbox").fill("e2e@")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_label("Plan of e2e@example.com")).to_have_value("free")
        shot(page, "desktop-users")

        step("admins: grant a role until a date, then see it listed")
        page.get_by_role("link", name="Admins").click()
        expect(page.get_by_role("heading", name="Admins")).to_be_visible()
        form = page.locator("#grant")
        form.get_by_label("Username").fill(USER)
        form.get_by_label("Role").select_option("billing")
        form.get_by_label("Expires (optional)").fill("2099-01-01T12:00")
        form.get_by_label("Reason").fill("e2e")
        form.get_by_role("button", name="Grant").click()
        expect(page.get_by_role("cell").filter(has_text="billing")).to_be_visible()
        shot(page, "desktop-admins")

        step("the admin audit log shows the sign-ins and the grant")
        page.get_by_role("link", name="Audit").click()
        expect(page.get_by_role("heading", name="Admin audit log")).to_be_visible()
        expect(page.get_by_role("cell", name="admin.role_granted")).to_be_visible()
        expect(page.get_by_role("cell", name="admin.login_failed")).to_be_visible()
        expect(page.get_by_role("cell", name="app.paused")).to_be_visible()
        shot(page, "desktop-audit")

        step("every page at phone width, without sideways scrolling")
        phone = browser.new_context(viewport=PHONE, is_mobile=True, storage_state=desktop.storage_state())
        small = phone.new_page()
        watch(small, "phone")
        for name in ["overview", "workers", "apps", "users", "admins", "audit"]:
            small.goto(BASE + ("/" if name == "overview" else f"/{name}"))
            expect(small.locator("h1")).to_be_visible()
            small.wait_for_load_state("load")
            width = small.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                problems.append(f"{name}: {width} px wide at {PHONE['width']} px")
            shot(small, f"phone-{name}")

        step("signing out returns to the sign-in form and the session is over")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        answer = page.request.get(BASE + "/api/me")
        if answer.status != 401:
            problems.append(f"after signing out /admin/api/me answered {answer.status}")
        browser.close()

    if problems:
        print("admin e2e: problems in the browser:", *problems, sep="\n  ")
        return 1
    print(f"admin e2e: passed; screenshots in {SHOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
