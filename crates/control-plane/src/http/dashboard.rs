//! The dashboard (SPEC §14.2), built by `web/dashboard` (`npm run build`) into `dist/` and
//! embedded in release builds (`rust-embed`; debug builds read `dist/` from disk).
//!
//! - `/assets/*`: content-hashed files, `Cache-Control: public, max-age=31536000, immutable`.
//! - `/`, `/login`, `/plans`, `/privacy`, `/terms`: prerendered pages (`dist/pages/*.html`).
//! - Every other path outside `/api` and `/v1`: the SPA shell (`dist/index.html`).
//! - HTML is `no-cache`; its CSP allows the one inline script (the theme bootstrap, which must
//!   run before the first paint) by its hash, computed here from the shell.
//! - Files are served precompressed (`.br`, `.gz`) when the browser accepts it.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web/dashboard/dist/"]
#[allow_missing = true]
struct Dist;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The prerendered pages and their files under `dist/pages/`.
const PAGES: [(&str, &str); 5] = [
    ("/", "pages/home.html"),
    ("/login", "pages/login.html"),
    ("/plans", "pages/plans.html"),
    ("/privacy", "pages/privacy.html"),
    ("/terms", "pages/terms.html"),
];

/// The fallback of the public router: the dashboard for browsers, JSON 404s for the APIs.
pub async fn serve(req: Request) -> Response {
    let path = req.uri().path();
    let api = path == "/api" || path.starts_with("/api/") || path.starts_with("/v1/");
    if api || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return super::not_found().await.into_response();
    }
    if path.starts_with("/assets/") {
        let file = path.trim_start_matches('/');
        return match file_response(file, req.headers()) {
            Some(mut response) => {
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
                response
            }
            None => ApiError::NotFound("no such asset; reload the page for the current ones".into())
                .into_response(),
        };
    }
    let file = PAGES.iter().find(|(page, _)| *page == path).map_or("index.html", |(_, file)| *file);
    // Other files at the root (icons and the like), served as they are.
    let root_file = path.trim_start_matches('/');
    if !root_file.is_empty()
        && !root_file.contains('/')
        && root_file.contains('.')
        && let Some(response) = file_response(root_file, req.headers())
    {
        return response;
    }
    match file_response(file, req.headers()) {
        Some(mut response) => {
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if let Ok(csp) = HeaderValue::from_str(page_csp()) {
                headers.insert(header::CONTENT_SECURITY_POLICY, csp);
            }
            response
        }
        None => not_built(),
    }
}

/// What the browser gets when the dashboard was not built into this binary.
fn not_built() -> Response {
    let body = "<!doctype html><title>WiseHosting</title><h1>The dashboard is not built</h1><p>Build it with <code>cd web/dashboard &amp;&amp; npm ci &amp;&amp; npm run build</code> (<code>bash scripts/run.sh</code> does it for you), then start the control plane again. The API answers at <a href=\"/api/docs/\">/api/docs/</a>.</p>";
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// The file (precompressed when the browser accepts it and a compressed copy exists).
fn file_response(file: &str, request: &HeaderMap) -> Option<Response> {
    let accepts = request.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let accepts =
        |coding: &str| accepts.split(',').any(|c| c.split(';').next().is_some_and(|c| c.trim() == coding));
    let (data, encoding) = [("br", ".br"), ("gzip", ".gz")]
        .iter()
        .filter(|(coding, _)| accepts(coding))
        .find_map(|(coding, ext)| Dist::get(&format!("{file}{ext}")).map(|f| (f.data, Some(*coding))))
        .or_else(|| Dist::get(file).map(|f| (f.data, None)))?;
    // Embedded (release) files are served from the binary without a copy.
    let mut response = Response::new(Body::from(data));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(coding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    Some(response)
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The pages' CSP: the API's, with the shell's inline scripts allowed by their hashes.
fn page_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let shell = Dist::get("index.html").map(|f| String::from_utf8_lossy(&f.data).into_owned()).unwrap_or_default();
        let hashes: String = inline_scripts(&shell)
            .iter()
            .map(|script| {
                use base64::Engine;
                let digest = Sha256::digest(script.as_bytes());
                format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
            })
            .collect();
        format!(
            "default-src 'self'; script-src 'self'{hashes}; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
        )
    })
}

/// The bodies of `<script>` elements without a `src`.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some(open_end) = rest[start..].find('>').map(|i| start + i + 1) else { break };
        let Some(close) = rest[open_end..].find("</script>").map(|i| open_end + i) else { break };
        if !rest[start..open_end].contains("src=") {
            scripts.push(&rest[open_end..close]);
        }
        rest = &rest[close + "</script>".len()..];
    }
    scripts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scripts_without_a_src_are_hashed() {
        let html = r#"<head><script>a()</script><script type="module" src="/x.js"></script></head><script>
b()</script>"#;
        assert_eq!(inline_scripts(html), ["a()", "\nb()"]);
        assert!(inline_scripts("<p>none</p>").is_empty());
    }

    #[test]
    fn types_follow_the_extension() {
        assert_eq!(content_type("assets/index-abc.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("pages/login.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.unknown"), "application/octet-stream");
    }
}
