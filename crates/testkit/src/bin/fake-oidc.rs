//! The stand-in OpenID provider (`wisehosting_testkit::oidc::FakeOidc`) as a process, for the
//! dashboard's browser run (`scripts/e2e.sh`): "Sign in with Google" in real Chromium goes
//! through the control plane's production client to this provider, which consents at once.
//! Prints `issuer=…`, `client_id=…` and `client_secret=…` (a throwaway test secret), then
//! serves until killed. Who signs in: `WH_FAKE_OIDC_EMAIL` (default `ada@example.com`).

#![allow(clippy::expect_used)]

use std::io::Write;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let idp = wisehosting_testkit::oidc::FakeOidc::start().await;
    if let Ok(email) = std::env::var("WH_FAKE_OIDC_EMAIL") {
        idp.set_user("1000001", &email, "Ada");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "issuer={}", idp.issuer()).expect("stdout");
    writeln!(out, "client_id={}", idp.client_id).expect("stdout");
    writeln!(out, "client_secret={}", idp.client_secret).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
    drop(idp);
}
