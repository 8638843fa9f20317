"""Dashboard figures (printed, never asserted): the entry script's gzipped size, and the first
contentful paint of /apps over ten loads in headless Chromium on loopback.

Run by `bash scripts/bench.sh dashboard` with WH_E2E_URL set to a running `wisehosting dev`.
"""

import gzip
import os
import re
import statistics
import urllib.request

from playwright.sync_api import sync_playwright

BASE = os.environ["WH_E2E_URL"].rstrip("/")
DIST = os.path.join(os.path.dirname(__file__), "..", "dist")


def main() -> None:
    shell = open(os.path.join(DIST, "index.html"), encoding="utf-8").read()
    entry = re.search(r'src="(/assets/[^"]+\.js)"', shell)
    if entry:
        raw = open(os.path.join(DIST, entry.group(1).lstrip("/")), "rb").read()
        print(f"entry script {entry.group(1)}: {len(raw) / 1024:.1f} KiB, {len(gzip.compress(raw, 9)) / 1024:.1f} KiB gzipped (budget 150)")
    request = urllib.request.Request(
        BASE + "/api/auth/dev-login", data=b'{"email":"bench@example.com"}', headers={"content-type": "application/json"}
    )
    cookie = urllib.request.urlopen(request).headers["set-cookie"].split(";")[0]
    name, value = cookie.split("=", 1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context()
        context.add_cookies([{"name": name, "value": value, "url": BASE}])
        paints = []
        for _ in range(10):
            page = context.new_page()
            page.goto(BASE + "/apps")
            page.wait_for_selector("h1")
            fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
            if fcp is not None:
                paints.append(fcp)
            page.close()
        browser.close()
    if paints:
        paints.sort()
        print(f"first contentful paint of /apps over {len(paints)} loads: median {statistics.median(paints):.0f} ms, worst {paints[-1]:.0f} ms (budget 500)")


if __name__ == "__main__":
    main()
