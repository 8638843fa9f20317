//! The stand-in GitHub (`wisehosting_testkit::gitprovider::FakeGitProvider`) as a process, for
//! the dashboard's browser run (`scripts/e2e.sh`): "Link GitHub" in real Chromium goes through
//! the control plane's production client to this provider, which consents at once and lists
//! one repository, `WH_FAKE_GIT_REPO` (its clone URL; in single-machine mode a local path) as
//! `<login>/e2e-site`. Prints `base_url=…`, `api_url=…`, `client_id=…` and `client_secret=…`
//! (a throwaway test secret), then serves until killed. The account: `WH_FAKE_GIT_LOGIN`
//! (default `ada-github`).

#![allow(clippy::expect_used)]

use std::io::Write;

use wisehosting_proto::job::GitProvider;
use wisehosting_testkit::{FakeGitProvider, FakeRepo};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let login = std::env::var("WH_FAKE_GIT_LOGIN").unwrap_or_else(|_| "ada-github".into());
    let provider = FakeGitProvider::start(GitProvider::Github, &login).await;
    if let Ok(clone_url) = std::env::var("WH_FAKE_GIT_REPO") {
        provider.add_repo(FakeRepo {
            full_name: format!("{login}/e2e-site"),
            clone_url,
            private: true,
            default_branch: "main".into(),
        });
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "base_url={}", provider.url).expect("stdout");
    writeln!(out, "api_url={}", provider.api_url()).expect("stdout");
    writeln!(out, "client_id={}", provider.client_id).expect("stdout");
    writeln!(out, "client_secret={}", provider.client_secret).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
    drop(provider);
}
