//! The console's pages: a small single-page app in `web/admin` (plain HTML, CSS and one
//! script — no build step, no CDN), compiled into the binary. `GET /admin/` and each page's
//! path answer the console when signed in and the sign-in form otherwise; the script fetches
//! its data from `/admin/api/`. Every answer carries a CSP without `unsafe-inline`.

use axum::Router;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::Console;
use super::auth::Admin;

const CONSOLE_HTML: &str = include_str!("../../../../web/admin/console.html");
const LOGIN_HTML: &str = include_str!("../../../../web/admin/login.html");
const CONSOLE_JS: &str = include_str!("../../../../web/admin/console.js");
const LOGIN_JS: &str = include_str!("../../../../web/admin/login.js");
const CONSOLE_CSS: &str = include_str!("../../../../web/admin/console.css");
const FAVICON: &str = include_str!("../../../../web/admin/favicon.svg");

/// The pages the console's script knows; any other path under `/admin/` is a 404.
pub const PAGES: &[&str] = &["overview", "workers", "apps", "users", "admins", "audit"];

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(page))
        .route("/admin/assets/{file}", get(asset))
        .route("/admin/{page}", get(named_page))
}

async fn page(console: axum::extract::State<Console>, req: Request) -> Response {
    html_for(&console, req).await
}

async fn named_page(
    console: axum::extract::State<Console>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    if !PAGES.contains(&name.as_str()) {
        return (StatusCode::NOT_FOUND, html_headers(), "<!doctype html><title>Not found</title><p>No such console page. <a href=\"/admin/\">Open the console</a>.").into_response();
    }
    html_for(&console, req).await
}

fn html_headers() -> [(header::HeaderName, &'static str); 2] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")]
}

/// The console when the request carries a live session, the sign-in form otherwise.
async fn html_for(console: &Console, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let signed_in = Admin::from_request_parts(&mut parts, console).await.is_ok();
    let body = if signed_in { CONSOLE_HTML } else { LOGIN_HTML };
    (html_headers(), body).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "login.js" => (LOGIN_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    // Not content-hashed: revalidated each time (the console is small and local).
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// CSP and the usual hardening headers on every answer.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    response
}
