//! The dashboard as the control plane serves it (SPEC §14.2): prerendered pages, the SPA shell
//! for client routes, hashed assets cached for good, precompressed, and a CSP that allows only
//! the shell's own inline script. Needs `web/dashboard/dist` (scripts/setup.sh builds it).

use base64::Engine;
use sha2::{Digest, Sha256};
use wisehosting_testkit::spawn_control_plane_with;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn pages_are_prerendered_client_routes_get_the_shell_and_assets_are_cached_for_good() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    // Compression is negotiated by hand below.
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let get = |path: &str, encoding: Option<&str>| {
        let mut request = client.get(cp.url(path));
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        request.send()
    };
    let home = get("/", None).await.expect("home");
    assert_eq!(home.status(), 200, "the dashboard is built (bash scripts/dashboard.sh build)");
    assert_eq!(header(&home, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&home, "cache-control"), "no-cache");
    let csp = header(&home, "content-security-policy").to_string();
    let html = home.text().await.expect("html");
    assert!(html.contains("Push a repository"), "the landing page's text is in the HTML");
    // The one inline script (the theme bootstrap) is allowed by its hash, and nothing else inline.
    let start = html.find("<script>").expect("the inline script") + "<script>".len();
    let end = start + html[start..].find("</script>").expect("its end");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&html.as_bytes()[start..end]));
    assert!(csp.contains(&format!("script-src 'self' 'sha256-{hash}'")), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    for (path, text) in [
        ("/login", "Sign in to WiseHosting"),
        ("/plans", "Every plan limits how many apps"),
        ("/privacy", "This installation keeps what it needs"),
        ("/terms", "You may run on this installation"),
    ] {
        let page = get(path, None).await.expect("page");
        assert_eq!(page.status(), 200, "{path}");
        let body = page.text().await.expect("html");
        assert!(body.contains(text), "{path} is readable without JavaScript");
    }
    for path in ["/apps", "/apps/new", "/apps/7/deployments", "/apps/7/env", "/usage", "/alerts", "/account"]
    {
        let page = get(path, None).await.expect("route");
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(header(&page, "cache-control"), "no-cache", "{path}");
        assert!(
            page.text().await.expect("html").contains("<div id=\"root\"><!--page--></div>"),
            "{path}: the SPA shell"
        );
    }
    let api = get("/api/nothing-here", None).await.expect("api");
    assert_eq!(api.status(), 404);
    assert_eq!(header(&api, "content-type"), "application/json", "/api stays JSON");

    let asset = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .expect("the entry script")
        .to_string();
    let plain = get(&asset, None).await.expect("asset");
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&plain, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header(&plain, "content-encoding"), "");
    let raw = plain.bytes().await.expect("js");
    let br = get(&asset, Some("gzip, deflate, br")).await.expect("asset");
    assert_eq!(header(&br, "content-encoding"), "br");
    assert!(br.bytes().await.expect("br").len() < raw.len() / 2, "brotli is served precompressed");
    let gz = get(&asset, Some("gzip")).await.expect("asset");
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    let missing = get("/assets/index-nothere.js", None).await.expect("missing");
    assert_eq!(missing.status(), 404);
}
