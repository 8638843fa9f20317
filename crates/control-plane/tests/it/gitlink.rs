//! Linked git provider accounts (SPEC §14.8, issue 17) against stand-ins of GitHub, GitLab,
//! Bitbucket and Codeberg that the production client talks to unchanged: link through the
//! OAuth redirects, `state` bound to the session, every page of repositories and branches,
//! refresh, revocation, unlink; a private repository cloned with the linked token.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use wisehosting_proto::job::GitProvider;
use wisehosting_testkit::{
    FakeGitProvider, FakeRepo, GitHttpsServer, TestControlPlane, TestDns, TestRepo, UserSession,
    spawn_control_plane_with,
};

use crate::deploy::{containerfile, pg_dump, platform_with_config};

pub(crate) const PUBLIC_URL: &str = "http://wisehosting.test";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), 302, "a redirect");
    response.headers()["location"].to_str().expect("location").to_string()
}

/// `GET /api/git/<provider>/link` as `user`: the provider's authorize URL.
async fn begin_link(cp: &TestControlPlane, user: &UserSession, provider: GitProvider) -> String {
    let response = no_redirects()
        .get(cp.url(&format!("/api/git/{provider}/link")))
        .header("cookie", &user.cookie)
        .send()
        .await
        .expect("link");
    location(&response)
}

/// The stand-in's consent: the callback's path and query on this control plane.
async fn consent(authorize_url: &str) -> String {
    let response = no_redirects().get(authorize_url).send().await.expect("authorize");
    let back = location(&response);
    let path = back.strip_prefix(PUBLIC_URL).expect("back to the public URL");
    path.to_string()
}

/// The callback as `user`: where it sends the browser.
async fn callback(cp: &TestControlPlane, user: &UserSession, path: &str) -> String {
    let response =
        no_redirects().get(cp.url(path)).header("cookie", &user.cookie).send().await.expect("callback");
    location(&response)
}

pub(crate) async fn link(cp: &TestControlPlane, user: &UserSession, provider: GitProvider) {
    let authorize = begin_link(cp, user, provider).await;
    let back = consent(&authorize).await;
    assert_eq!(callback(cp, user, &back).await, "/account");
}

fn repos(fake: &FakeGitProvider, owner: &str, count: usize) {
    for i in 0..count {
        fake.add_repo(FakeRepo {
            full_name: format!("{owner}/app-{i:02}"),
            clone_url: format!("https://git.example.com/{owner}/app-{i:02}.git"),
            private: i % 2 == 0,
            default_branch: if i == 0 { "trunk".into() } else { "main".into() },
        });
    }
}

async fn json_of(user: &UserSession, path: &str, status: u16) -> Value {
    let response = user.get(path).await;
    assert_eq!(response.status(), status, "{path}");
    response.json().await.expect("json")
}

/// All four providers, linked through their redirects: the authorize URL carries the client,
/// the callback and a state; the account is listed with its login; every page of its
/// repositories and branches comes back in one shape; unlinking revokes the token at GitHub
/// and GitLab (which offer it) and the account is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_links_lists_every_page_and_unlinks() {
    let mut fakes = Vec::new();
    for provider in GitProvider::ALL {
        let fake = FakeGitProvider::start(provider, &format!("ann-{provider}")).await;
        repos(&fake, &format!("ann-{provider}"), 23);
        fake.set_branches(&(0..12).map(|i| format!("b{i}")).collect::<Vec<_>>());
        fakes.push(fake);
    }
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.api_server.public_url = Some(PUBLIC_URL.into());
        for fake in &fakes {
            fake.configure(c);
        }
    })
    .await;
    let user = cp.login("ann@example.com").await;
    let platform = json_of(&user, "/api/platform", 200).await;
    assert_eq!(platform["git_providers"], json!(["github", "gitlab", "bitbucket", "codeberg"]));

    for fake in &fakes {
        let provider = fake.provider;
        let authorize = begin_link(&cp, &user, provider).await;
        let url = url::Url::parse(&authorize).expect("authorize URL");
        assert!(authorize.starts_with(&fake.url), "{authorize}");
        let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["client_id"], fake.client_id);
        assert_eq!(query["redirect_uri"], format!("{PUBLIC_URL}/api/git/{provider}/callback"));
        assert!(query["state"].len() >= 32, "an unguessable state: {query:?}");
        let back = consent(&authorize).await;
        assert_eq!(callback(&cp, &user, &back).await, "/account", "{provider}");

        let repos = json_of(&user, &format!("/api/git/{provider}/repos"), 200).await;
        let repos = repos.as_array().expect("array");
        assert_eq!(
            repos.len(),
            23,
            "{provider}: every page ({} a page)",
            wisehosting_testkit::gitprovider::PAGE_SIZE
        );
        let first =
            repos.iter().find(|r| r["full_name"] == format!("{}/app-00", fake.login)).expect("app-00");
        assert_eq!(
            first,
            &json!({"full_name": format!("{}/app-00", fake.login),
                    "clone_url": format!("https://git.example.com/{}/app-00.git", fake.login),
                    "private": true, "default_branch": "trunk"}),
            "{provider}"
        );
        let branches =
            json_of(&user, &format!("/api/git/{provider}/repos/{}/app-01/branches", fake.login), 200).await;
        assert_eq!(branches.as_array().map(Vec::len), Some(12), "{provider}: {branches}");
        assert_eq!(branches[0], json!({"name": "b0"}));
        if provider == GitProvider::Gitlab {
            // A project in a subgroup: the owner `group/sub` travels as `group%2Fsub`.
            fake.add_repo(FakeRepo {
                full_name: format!("{}/sub/deep", fake.login),
                clone_url: "https://git.example.com/deep.git".into(),
                private: true,
                default_branch: "main".into(),
            });
            let nested =
                json_of(&user, &format!("/api/git/gitlab/repos/{}%2Fsub/deep/branches", fake.login), 200)
                    .await;
            assert_eq!(nested.as_array().map(Vec::len), Some(12), "{nested}");
            let other = user.get(&format!("/api/git/github/repos/{}%2Fsub/deep/branches", fake.login)).await;
            assert_eq!(other.status(), 422, "nesting is GitLab's only");
        }
    }
    let linked = json_of(&user, "/api/git/providers", 200).await;
    let logins: Vec<(&str, &str)> = linked
        .as_array()
        .expect("array")
        .iter()
        .map(|l| (l["provider"].as_str().unwrap_or_default(), l["login"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        logins,
        [
            ("bitbucket", "ann-bitbucket"),
            ("codeberg", "ann-codeberg"),
            ("github", "ann-github"),
            ("gitlab", "ann-gitlab")
        ]
    );
    assert!(linked[0]["linked_at"].is_string());
    let me = json_of(&user, "/api/me", 200).await;
    assert_eq!(me["git_providers"].as_array().map(Vec::len), Some(4));
    // No token in any answer or row in the clear.
    let dump = pg_dump(&cp);
    for fake in &fakes {
        for token in fake.live_tokens() {
            assert!(!dump.contains(&token), "a token in the clear in the database");
            assert!(!me.to_string().contains(&token));
        }
    }

    for fake in &fakes {
        let provider = fake.provider;
        let tokens = fake.live_tokens();
        let response =
            user.request(Method::DELETE, &format!("/api/git/{provider}")).send().await.expect("unlink");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        let revocable = matches!(provider, GitProvider::Github | GitProvider::Gitlab);
        assert_eq!(body["revoked"], revocable, "{provider}");
        if revocable {
            assert_eq!(fake.revocations(), tokens, "{provider}: the token was revoked at the provider");
            assert!(fake.live_tokens().is_empty());
        }
        let gone = user.get(&format!("/api/git/{provider}/repos")).await;
        assert_eq!(gone.status(), 404, "{provider}");
        let error: Value = gone.json().await.expect("json");
        assert!(error["message"].as_str().unwrap_or_default().contains("link one"), "{error}");
    }
    assert_eq!(json_of(&user, "/api/git/providers", 200).await, json!([]));
    let audit: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE user_id = $1 AND action LIKE 'git.%' ORDER BY id",
    )
    .bind(user.user_id)
    .fetch_all(&cp.db)
    .await
    .expect("audit");
    assert_eq!(audit.iter().filter(|a| *a == "git.linked").count(), 4);
    assert_eq!(audit.iter().filter(|a| *a == "git.unlinked").count(), 4);
}

/// The `state` is bound to the session that began the link: another user's callback with it
/// links nothing (and leaves it for its owner), a callback without one links nothing, a
/// state is used once, and a provider not configured here says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_another_sessions_state_links_nothing() {
    let fake = FakeGitProvider::start(GitProvider::Github, "ann").await;
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.api_server.public_url = Some(PUBLIC_URL.into());
        fake.configure(c);
    })
    .await;
    let (ann, mallory) = (cp.login("ann@example.com").await, cp.login("mallory@example.com").await);

    let authorize = begin_link(&cp, &ann, GitProvider::Github).await;
    let back = consent(&authorize).await;
    assert_eq!(callback(&cp, &mallory, &back).await, "/account?git_error=bad_state");
    assert_eq!(json_of(&mallory, "/api/git/providers", 200).await, json!([]));
    assert_eq!(json_of(&ann, "/api/git/providers", 200).await, json!([]));

    let without_state = back.split("&state=").next().expect("path").to_string();
    assert_eq!(callback(&cp, &ann, &without_state).await, "/account?git_error=bad_request");
    assert_eq!(callback(&cp, &ann, &back).await, "/account", "the owner's state still works");
    assert_eq!(json_of(&ann, "/api/git/providers", 200).await[0]["login"], "ann");
    assert_eq!(callback(&cp, &ann, &back).await, "/account?git_error=bad_state", "used once");

    let denied = "/api/git/github/callback?error=access_denied&state=x";
    assert_eq!(callback(&cp, &ann, denied).await, "/account?git_error=provider_error");
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'git.link_failed' AND user_id = $1",
    )
    .bind(mallory.user_id)
    .fetch_one(&cp.db)
    .await
    .expect("audit");
    assert_eq!(failures, 1, "the refused callback is audited");

    let off = ann.get("/api/git/gitlab/link").await;
    assert_eq!(off.status(), 404);
    let body: Value = off.json().await.expect("json");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("git_providers.gitlab.client_id"),
        "{body}"
    );
    let unknown = ann.get("/api/git/sourceforge/repos").await;
    assert_eq!(unknown.status(), 404);
}

/// A token that expired is refreshed with the refresh token before use (and the rotated
/// refresh token kept); one the user revoked at the provider is reported as such, naming
/// the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_and_a_revoked_one_is_reported_clearly() {
    let fake = FakeGitProvider::start(GitProvider::Codeberg, "ann").await;
    repos(&fake, "ann", 3);
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.api_server.public_url = Some(PUBLIC_URL.into());
        fake.configure(c);
    })
    .await;
    let user = cp.login("ann@example.com").await;
    // Two minutes: inside the control plane's refresh margin, as a token about to expire.
    fake.set_token_lifetime(Some(Duration::from_secs(120)));
    link(&cp, &user, GitProvider::Codeberg).await;
    fake.expire_tokens();
    assert!(fake.live_tokens().is_empty(), "the linked token no longer works at the provider");
    assert_eq!(json_of(&user, "/api/git/codeberg/repos", 200).await.as_array().map(Vec::len), Some(3));
    assert_eq!(fake.refreshes(), 1, "refreshed once");
    fake.expire_tokens();
    assert_eq!(json_of(&user, "/api/git/codeberg/repos", 200).await.as_array().map(Vec::len), Some(3));
    assert_eq!(fake.refreshes(), 2, "the rotated refresh token was kept and worked");

    fake.revoke_everything();
    let refused = user.get("/api/git/codeberg/repos").await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "git_link_rejected");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("link the codeberg account again"),
        "{body}"
    );

    // A token without expiry that the provider stops accepting: the same answer.
    fake.set_token_lifetime(None);
    link(&cp, &user, GitProvider::Codeberg).await;
    assert_eq!(user.get("/api/git/codeberg/repos").await.status(), 200);
    fake.revoke_everything();
    let body: Value = user.get("/api/git/codeberg/repos").await.json().await.expect("json");
    assert_eq!(body["code"], "git_link_rejected", "{body}");
}

/// A private repository picked from a linked GitLab account: the deploy clones it with the
/// linked token under GitLab's OAuth user name (`oauth2`), through a real TLS git server that
/// checks it; the token is in no row in the clear and no answer; the app's push webhook is
/// registered on the repository with the app's secret. Without a link the deploy is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_clones_with_the_linked_token() {
    let fake = FakeGitProvider::start(GitProvider::Gitlab, "ann").await;
    let token = format!("glo_{}", hex::encode(wisehosting_crypto::random_bytes::<12>()));
    fake.set_next_token(&token);
    let dns = TestDns::start().await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &containerfile("linked private repo"))], "v1");
    let host = format!("gitlab-{}.test", hex::encode(wisehosting_crypto::random_bytes::<4>()));
    let server = GitHttpsServer::start_for_user(&repo, &host, "oauth2", &token).await;
    dns.set_addrs(&host, &[&[server.addr.into()]]);
    let url = format!("https://{host}:{}/repo.git", server.port);
    fake.add_repo(FakeRepo {
        full_name: "ann/repo".into(),
        clone_url: url.clone(),
        private: true,
        default_branch: "main".into(),
    });
    let settings = format!("  dns_resolver: {}\n  git_ca_file: {}\n", dns.addr, server.ca_file.display());
    let (cp, _agent, user) = platform_with_config("linked-clone", "ann@example.com", &settings, |c| {
        c.api_server.public_url = Some(PUBLIC_URL.into());
        fake.configure(c);
    })
    .await;

    let unlinked = user
        .post_json("/api/deploy", &json!({"name": "early", "repo_url": url, "git_provider": "gitlab"}))
        .await;
    assert_eq!(unlinked.status(), 422, "no linked account yet");
    let body: Value = unlinked.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or_default().contains("no gitlab account is linked"), "{body}");

    link(&cp, &user, GitProvider::Gitlab).await;
    assert_eq!(fake.live_tokens(), std::slice::from_ref(&token));
    let picked = json_of(&user, "/api/git/gitlab/repos", 200).await;
    assert_eq!(picked[0]["clone_url"], url.as_str());
    let created = user
        .post_json(
            "/api/deploy",
            &json!({"name": "linked", "repo_url": url, "port": 8080, "git_provider": "gitlab"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["app"]["git_provider"], "gitlab");
    assert_eq!(created["webhook"], "registered on gitlab for ann/repo", "{created}");
    let d =
        user.wait_deployment(created["deployment"]["id"].as_i64().expect("id"), crate::deploy::LIMIT).await;
    assert_eq!(d["status"], "running", "{d}");
    use base64::Engine as _;
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{token}")));
    let seen = server.seen();
    assert!(!seen.is_empty() && seen.iter().all(|a| a.as_deref() == Some(expected.as_str())), "{seen:?}");
    assert!(!pg_dump(&cp).contains(&token), "the linked token is in a pg_dump");
    let app_id = created["app"]["id"].as_i64().expect("app id");
    let deployment = d["id"].as_i64().expect("id");
    crate::deploy::assert_no_api_answer_shows(&user, app_id, deployment, &[&token]).await;

    // The hook on the repository delivers to this app's receiver with its secret.
    let hooks = fake.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let push = json_of(&user, &format!("/api/apps/{app_id}/webhook"), 200).await;
    assert_eq!(hooks[0].0, "ann/repo");
    assert_eq!(hooks[0].1["url"].as_str(), push["urls"]["gitlab"].as_str());
    assert_eq!(hooks[0].1["token"].as_str(), push["secret"].as_str());
    assert_eq!(hooks[0].1["push_events"], true);

    // Unlinked, the app's next deploy is refused with the reason, not sent to fail at git.
    assert_eq!(user.request(Method::DELETE, "/api/git/gitlab").send().await.expect("unlink").status(), 200);
    let again = user.post_json(&format!("/api/apps/{app_id}/deployments"), &json!({})).await;
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or_default().contains("no gitlab account is linked"), "{body}");
    // A token of the app's own takes the link's place.
    let set = user
        .request(Method::PUT, &format!("/api/apps/{app_id}/git-token"))
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("put");
    assert_eq!(set.status(), 200);
    let app = json_of(&user, &format!("/api/apps/{app_id}"), 200).await;
    assert_eq!(app["git_provider"], Value::Null, "{app}");
    assert_eq!(app["has_git_token"], true);
}
