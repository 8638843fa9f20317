//! `wisehosting-admin serve` against a real control plane and PostgreSQL (SPEC §14.4;
//! SECURITY-TESTS T05, T07, T16): accounts made with the binary as an operator makes them,
//! the console served by the library's server, requests as a browser sends them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wisehosting_admin::serve::Server;
use wisehosting_control_plane::plans::PlanConfig;
use wisehosting_crypto::Secret;
use wisehosting_testkit::{
    TestControlPlane, TestRepo, create_worker, eventually, page_containerfile, spawn_control_plane_with,
    spawn_platform,
};

const TOKEN: &str = "internal-api-token-0123456789abcdef0123";
const PASSWORD: &str = "a long enough console password";

struct Console {
    url: String,
    client: reqwest::Client,
    stop: CancellationToken,
    config: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The console in front of `cp`'s internal API, on a free loopback port.
async fn console(cp: &TestControlPlane) -> Console {
    let mut config = cp.config.clone();
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.internal_api_url = format!("http://{}", cp.internal_addr.expect("the internal API listens"));
    let server = Server::bind(&config, cp.db.clone()).await.expect("bind the console");
    let url = format!("http://{}", server.local_addr());
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(server.run(async move { until.cancelled().await }));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "database:\n  url: {}\napi_server:\n  secret: {}\n",
            cp.database_url,
            cp.config.api_server.secret.expose()
        ),
    )
    .expect("config");
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    Console { url, client, stop, config: dir }
}

impl Console {
    /// `wisehosting-admin <args>` with the password on standard input, as an operator runs it:
    /// what it printed.
    fn admin(&self, args: &[&str]) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wisehosting-admin"))
            .args(args)
            .env("CONFIG_PATH", self.config.path().join("config.yaml"))
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child.stdin.take().expect("stdin").write_all(PASSWORD.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn create(&self, username: &str, role: &str) {
        self.admin(&["create-account", "--username", username, "--role", role]);
    }

    async fn login_with_code(&self, username: &str, code: Option<&str>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/admin/api/login", self.url))
            .json(&json!({ "username": username, "password": PASSWORD, "totp_code": code }))
            .send()
            .await
            .expect("login");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn login_as(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/admin/api/login", self.url))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("login")
    }

    /// Signs in and returns the session cookie (`wh_admin=…`).
    async fn sign_in(&self, username: &str) -> String {
        let r = self.login_as(username, PASSWORD).await;
        assert_eq!(r.status(), 200, "{username} signs in");
        let set = r.headers()["set-cookie"].to_str().expect("ascii").to_string();
        set.split(';').next().expect("pair").to_string()
    }

    async fn get(&self, cookie: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn post(&self, cookie: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .header("origin", &self.url)
            .header("sec-fetch-site", "same-origin")
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_and_reads_a_real_workers_containers_through_the_internal_api_and_the_hub() {
    let (cp, agent, user) = spawn_platform("admin-e2e", "tenant@example.com", |c| {
        c.internal_api.token = Secret::new(TOKEN);
    })
    .await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("admin"))], "v1");
    let (app, deployment) = user.deploy("Administered", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, Duration::from_secs(120)).await["status"], "running");
    let worker = agent.worker.id;
    let c = console(&cp).await;
    c.create("root-admin", "super_admin");

    // Signed out, the console's address answers the sign-in form, under a strict CSP.
    let page = c.client.get(format!("{}/admin/", c.url)).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(html.contains("<form id=\"login\"") && !html.contains("<script>"), "{html}");

    let wrong = c.login_as("root-admin", "not the password at all").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.expect("json")["code"], "invalid_credentials");
    let r = c.login_as("root-admin", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().expect("ascii").to_string();
    for attribute in ["wh_admin=wha_", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let cookie = set.split(';').next().expect("pair").to_string();

    let page = c
        .client
        .get(format!("{}/admin/workers", c.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert!(page.text().await.expect("html").contains("id=\"nav\""), "signed in, the console itself");
    let (_, me) = c.get(&cookie, "/admin/api/me").await;
    assert_eq!(me, json!({ "username": "root-admin", "roles": ["super_admin"] }));

    let (status, overview) = c.get(&cookie, "/admin/api/overview").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["stats"]["apps_total"], 1, "{overview}");
    assert_eq!(overview["series"].as_array().map(Vec::len), Some(24));
    let (_, workers) = c.get(&cookie, "/admin/api/workers").await;
    assert_eq!(
        (workers[0]["worker_id"].as_i64(), workers[0]["connected"].as_bool()),
        (Some(worker), Some(true))
    );
    let (_, apps) = c.get(&cookie, "/admin/api/apps?q=administ").await;
    assert_eq!(apps[0]["id"], app, "{apps}");
    assert_eq!(apps[0]["owner_email"], "tenant@example.com");
    let (_, users) = c.get(&cookie, "/admin/api/users?q=TENANT").await;
    assert_eq!(users[0]["email"], "tenant@example.com", "{users}");
    let (status, logs) = c.get(&cookie, &format!("/admin/api/apps/{app}/logs")).await;
    assert_eq!(status, 200, "{logs}");

    // The chain: console → internal API → hub → the worker → podman.
    let (status, ps) = c.get(&cookie, &format!("/admin/api/workers/{worker}/podman/ps")).await;
    assert_eq!(status, 200, "{ps}");
    assert!(ps["output"].as_str().unwrap_or("").contains(&agent.instance), "the app's container: {ps}");
    let canary = tempfile::tempdir().expect("dir").keep().join("canary");
    let touch = format!("$(touch {})", canary.display());
    for cmd in ["exec", "rm", "; id", "$(whoami)", "-a", "ps -a", touch.as_str()] {
        let path = format!(
            "/admin/api/workers/{worker}/podman/{}",
            url::form_urlencoded::byte_serialize(cmd.as_bytes()).collect::<String>().replace('+', "%20")
        );
        let (status, body) = c.get(&cookie, &path).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("unknown_command")), "{cmd}: {body}");
    }
    assert!(!canary.exists(), "no shell ran anything");
    // A registered worker that is not connected: 503 at once, through the chain.
    let offline = create_worker(&cp, "admin-offline").await;
    let (status, body) = c.get(&cookie, &format!("/admin/api/workers/{}/podman/ps", offline.id)).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("worker_offline")), "{body}");

    let (_, audit) = c.get(&cookie, "/admin/api/audit").await;
    let actions: Vec<&str> =
        audit.as_array().expect("rows").iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"admin.login") && actions.contains(&"admin.login_failed"), "{actions:?}");
    assert!(actions.contains(&"admin.podman_query"), "{actions:?}");

    let (status, _) = c.post(&cookie, "/admin/api/logout", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(c.get(&cookie, "/admin/api/me").await.0, 401, "the session ended");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_ends_at_its_second_in_the_same_session_and_nobody_grants_above_their_own_role() {
    let cp = spawn_control_plane_with(|c| c.internal_api.token = Secret::new(TOKEN)).await;
    let c = console(&cp).await;
    c.create("boss", "super_admin");
    c.create("helper", "read_only");
    let boss = c.sign_in("boss").await;
    let helper = c.sign_in("helper").await;

    // read_only: the dashboards, nothing else, and no way to raise itself.
    assert_eq!(c.get(&helper, "/admin/api/workers").await.0, 200);
    for path in [
        "/admin/api/users",
        "/admin/api/apps",
        "/admin/api/admins",
        "/admin/api/audit",
        "/admin/api/workers/1/podman/ps",
    ] {
        let (status, body) = c.get(&helper, path).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{path}: {body}");
    }
    for (path, body) in [
        ("/admin/api/grants", json!({ "username": "helper", "role": "super_admin", "expires_at": null })),
        ("/admin/api/grants", json!({ "username": "helper", "role": "support", "expires_at": null })),
        ("/admin/api/grants/revoke", json!({ "username": "boss", "role": "super_admin" })),
    ] {
        let (status, answer) = c.post(&helper, path, body).await;
        assert_eq!(status, 403, "{path}: {answer}");
    }

    // A grant until T: works at T − 1 s, not at T + 1 s, on the same session.
    let t = Utc::now() + chrono::Duration::seconds(4);
    let (status, body) = c
        .post(
            &boss,
            "/admin/api/grants",
            json!({ "username": "helper", "role": "support", "expires_at": t, "reason": "on call" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = c.get(&helper, "/admin/api/users").await;
    assert!(Utc::now() < t - chrono::Duration::seconds(1), "the check ran before T − 1 s");
    assert_eq!(status, 200, "support reads users while the grant lasts");
    let passed = eventually(Duration::from_secs(10), Duration::from_millis(100), || async {
        Utc::now() > t + chrono::Duration::seconds(1)
    })
    .await;
    assert!(passed);
    assert_eq!(c.get(&helper, "/admin/api/users").await.0, 403, "expired: nothing from that second on");
    assert_eq!(c.get(&helper, "/admin/api/me").await.1["roles"], json!(["read_only"]));

    // Grants are checked; the last super_admin stays.
    let (status, body) =
        c.post(&boss, "/admin/api/grants", json!({ "username": "helper", "role": "support", "expires_at": Utc::now() - chrono::Duration::seconds(5) })).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_input")), "{body}");
    let (status, body) =
        c.post(&boss, "/admin/api/grants", json!({ "username": "nobody", "role": "support" })).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        c.post(&boss, "/admin/api/grants", json!({ "username": "helper", "role": "root" })).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        c.post(&boss, "/admin/api/grants/revoke", json!({ "username": "boss", "role": "super_admin" })).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    let (_, admins) = c.get(&boss, "/admin/api/admins").await;
    assert_eq!(admins.as_array().map(Vec::len), Some(2), "{admins}");

    // Cross-site and non-JSON changes are refused (T06, as on the public API).
    let r = c
        .client
        .post(format!("{}/admin/api/grants", c.url))
        .header("cookie", &boss)
        .header("origin", "http://evil.example")
        .json(&json!({ "username": "helper", "role": "super_admin" }))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = c
        .client
        .post(format!("{}/admin/api/grants", c.url))
        .header("cookie", &boss)
        .header("content-type", "text/plain")
        .body(r#"{"username":"helper","role":"super_admin"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    let held: Vec<String> = sqlx::query_scalar(
        "SELECT g.role FROM admin_role_grants g JOIN admin_accounts a ON a.id = g.admin_id
         WHERE a.username = 'helper' AND g.revoked_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > now())",
    )
    .fetch_all(&cp.db)
    .await
    .expect("grants");
    assert_eq!(held, ["read_only"], "none of the refused changes happened");

    // A session idle for over an hour is over.
    sqlx::query("UPDATE admin_sessions SET last_seen_at = now() - interval '61 minutes' WHERE admin_id = (SELECT id FROM admin_accounts WHERE username = 'helper')")
        .execute(&cp.db)
        .await
        .expect("age the session");
    assert_eq!(c.get(&helper, "/admin/api/me").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_backs_off_after_failures_and_unknown_users_cost_as_much_as_wrong_passwords() {
    let cp = spawn_control_plane_with(|c| c.internal_api.token = Secret::new(TOKEN)).await;
    let c = console(&cp).await;
    for (user, pass) in [("admin", "admin"), ("root", "root"), ("admin", "password")] {
        assert_eq!(c.login_as(user, pass).await.status(), 401, "no default account {user}");
    }
    c.create("alice", "support");
    c.create("bob", "support");

    // Equal timing: an unknown username runs bcrypt as a wrong password does.
    let c = &c;
    let timed = |user: &'static str| async move {
        let started = Instant::now();
        let r = c.login_as(user, "wrong password for sure").await;
        (r.status().as_u16(), started.elapsed())
    };
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for (u, w) in [("ghost-1", "alice"), ("ghost-2", "bob")] {
        let (status, t) = timed(u).await;
        assert_eq!(status, 401);
        unknown.push(t);
        let (status, t) = timed(w).await;
        assert_eq!(status, 401);
        wrong.push(t);
    }
    let (u, w) = (unknown.iter().min().copied().unwrap(), wrong.iter().min().copied().unwrap());
    println!("sign-in refusal: unknown user {u:?}, wrong password {w:?}");
    assert!(w >= Duration::from_millis(50), "bcrypt at cost 12 ran: {w:?}");
    let ratio = u.as_secs_f64() / w.as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "unknown {u:?} against wrong {w:?}");
    let over = "x".repeat(100);
    assert_eq!(c.login_as("alice", &over).await.status(), 401, "over 72 bytes: refused, no panic");

    // Back-off: alice has failed twice; the third failure makes the next try wait, and a
    // try during the wait is refused unchecked — even with the right password.
    assert_eq!(c.login_as("alice", "wrong again, third").await.status(), 401);
    let early = c.login_as("alice", PASSWORD).await;
    assert_eq!(early.status(), 429);
    let wait: u64 = early.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    // Unknown usernames back off alike, so a 429 tells nobody which accounts exist.
    for _ in 0..3 {
        assert_eq!(c.login_as("ghost-3", "nope nope nope").await.status(), 401);
    }
    assert_eq!(c.login_as("ghost-3", "nope nope nope").await.status(), 429);
    let waited = eventually(Duration::from_secs(5), Duration::from_millis(250), || async {
        c.login_as("alice", PASSWORD).await.status() == 200
    })
    .await;
    assert!(waited, "after the wait the right password signs in");
    let failures: i32 =
        sqlx::query_scalar("SELECT failed_logins FROM admin_accounts WHERE username = 'alice'")
            .fetch_one(&cp.db)
            .await
            .expect("row");
    assert_eq!(failures, 0, "a success clears the count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_pauses_an_app_its_owner_cannot_restart_and_unlocks_a_stuck_deploy_while_billing_sets_plans()
{
    let (cp, agent, user) = spawn_platform("admin-ops", "owner@example.com", |c| {
        c.internal_api.token = Secret::new(TOKEN);
        c.plans = vec![PlanConfig { name: "pro".into(), apps: Some(50), ..PlanConfig::default() }];
    })
    .await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("paused"))], "v1");
    let (app, deployment) = user.deploy("Pausable", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, Duration::from_secs(120)).await["status"], "running");
    let c = console(&cp).await;
    c.create("sup", "support");
    c.create("money", "billing");
    c.create("viewer", "read_only");
    let (sup, money, viewer) = (c.sign_in("sup").await, c.sign_in("money").await, c.sign_in("viewer").await);
    let app_status = || async {
        user.get(&format!("/api/apps/{app}")).await.json::<Value>().await.expect("app")["status"].clone()
    };

    // read_only and billing change nothing of apps.
    for who in [&viewer, &money] {
        let (status, _) =
            c.post(who, &format!("/admin/api/apps/{app}/pause"), json!({ "reason": "x" })).await;
        assert_eq!(status, 403);
    }

    // Pause: the app stops, and its owner cannot start, restart or redeploy it.
    let (status, body) =
        c.post(&sup, &format!("/admin/api/apps/{app}/pause"), json!({ "reason": "abuse report 42" })).await;
    assert_eq!(status, 200, "{body}");
    let stopped = eventually(Duration::from_secs(60), Duration::from_millis(250), || async {
        app_status().await == "stopped"
    })
    .await;
    assert!(stopped, "the pause stops the app: {}", app_status().await);
    for path in [
        format!("/api/apps/{app}/start"),
        format!("/api/apps/{app}/restart"),
        format!("/api/apps/{app}/deployments"),
    ] {
        let r = user.post_json(&path, &json!({})).await;
        assert_eq!(r.status(), 409, "{path}");
        let message = r.json::<Value>().await.expect("json")["message"].as_str().unwrap_or("").to_string();
        assert!(message.contains("paused") && message.contains("abuse report 42"), "{path}: {message}");
    }
    let (status, _) = c.post(&sup, &format!("/admin/api/apps/{app}/pause"), json!({})).await;
    assert_eq!(status, 409, "paused already");
    let (_, apps) = c.get(&sup, "/admin/api/apps?q=pausable").await;
    assert!(apps[0]["paused_at"].is_string(), "{apps}");
    let owned: Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("app");
    assert_eq!(owned["paused"], true, "the owner sees it paused: {owned}");

    // Unpause: it runs again.
    let (status, body) =
        c.post(&sup, &format!("/admin/api/apps/{app}/unpause"), json!({ "reason": "resolved" })).await;
    assert_eq!(status, 200, "{body}");
    let running = eventually(Duration::from_secs(60), Duration::from_millis(250), || async {
        app_status().await == "running"
    })
    .await;
    assert!(running, "unpaused, the app starts: {}", app_status().await);
    let owned: Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("app");
    assert_eq!(owned["paused"], false);

    // A stuck deploy (a build that would take minutes) is unlocked: cancelled, the running
    // version keeps serving, and the owner may deploy again.
    let (status, _) = c.post(&sup, &format!("/admin/api/apps/{app}/unlock"), json!({})).await;
    assert_eq!(status, 409, "nothing in progress");
    repo.commit(&[("Containerfile", "FROM localhost/wisehosting/busybox:latest\nRUN sleep 600\n")], "slow");
    let stuck = user.redeploy(app).await;
    let building = eventually(Duration::from_secs(60), Duration::from_millis(200), || async {
        user.get(&format!("/api/deployments/{stuck}")).await.json::<Value>().await.expect("d")["status"]
            == "building"
    })
    .await;
    assert!(building);
    let (status, body) =
        c.post(&sup, &format!("/admin/api/apps/{app}/unlock"), json!({ "reason": "hung build" })).await;
    assert_eq!((status, body["cancelled"].clone()), (200, json!([stuck])), "{body}");
    let d: Value = user.get(&format!("/api/deployments/{stuck}")).await.json().await.expect("d");
    assert_eq!(d["status"], "cancelled", "{d}");
    assert_eq!(app_status().await, "running", "the running version keeps serving");

    // Plans: billing sets them; support may not; an unknown plan is named.
    let (_, users) = c.get(&money, "/admin/api/users?q=owner").await;
    let owner = users[0]["id"].as_i64().expect("user id");
    let (_, plans) = c.get(&money, "/admin/api/plans").await;
    assert!(plans.as_array().is_some_and(|p| p.iter().any(|n| n == "free")), "{plans}");
    let (status, _) =
        c.post(&sup, &format!("/admin/api/users/{owner}/plan"), json!({ "plan": "free" })).await;
    assert_eq!(status, 403);
    let (status, body) =
        c.post(&money, &format!("/admin/api/users/{owner}/plan"), json!({ "plan": "platinum" })).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_input")), "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("free"), "names the plans: {body}");
    assert_eq!(users[0]["plan"], "free");
    let plan = "pro";
    let (status, body) = c
        .post(
            &money,
            &format!("/admin/api/users/{owner}/plan"),
            json!({ "plan": plan, "reason": "invoice 7" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, users) = c.get(&money, "/admin/api/users?q=owner").await;
    assert_eq!(users[0]["plan"], plan);

    // Each change is one admin audit row, written with it.
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT action, actor FROM admin_audit_events WHERE action IN ('app.paused', 'app.unpaused', 'app.unlocked', 'user.plan_set') ORDER BY id",
    )
    .fetch_all(&cp.db)
    .await
    .expect("audit");
    let rows: Vec<(&str, &str)> =
        rows.iter().map(|(a, b)| (a.as_str(), b.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        rows,
        [
            ("app.paused", "admin:sup"),
            ("app.unpaused", "admin:sup"),
            ("app.unlocked", "admin:sup"),
            ("user.plan_set", "admin:money")
        ]
    );
    drop(agent);
}

/// The TOTP code of a base32 secret at `unix`, computed here independently of the console.
fn code_at(secret_base32: &str, unix: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).expect("base32");
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec().into_boxed_slice())
        .build_noncompliant()
        .generate(unix)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_second_factor_signs_in_only_with_a_current_code_used_once() {
    let cp = spawn_control_plane_with(|c| c.internal_api.token = Secret::new(TOKEN)).await;
    let c = console(&cp).await;
    c.create("careful", "super_admin");
    let printed = c.admin(&["totp", "--username", "careful"]);
    let mut lines = printed.lines().rev();
    let secret = lines.next().expect("the base32 secret, last").trim().to_string();
    assert!(lines.next().is_some_and(|l| l.starts_with("otpauth://totp/")), "{printed}");
    let sealed: String =
        sqlx::query_scalar("SELECT totp_sealed FROM admin_accounts WHERE username = 'careful'")
            .fetch_one(&cp.db)
            .await
            .expect("row");
    assert!(!sealed.contains(&secret), "sealed at rest");

    let (status, body) = c.login_with_code("careful", None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_totp")), "the password alone: {body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let (status, _) = c.login_with_code("careful", Some(&code_at(&secret, now - 90))).await;
    assert_eq!(status, 401, "a code three steps old");
    let code = code_at(&secret, now);
    let (status, body) = c.login_with_code("careful", Some(&code)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = c.login_with_code("careful", Some(&code)).await;
    assert_eq!(status, 401, "the same code again");

    c.admin(&["totp", "--username", "careful", "--off"]);
    let (status, _) = c.login_with_code("careful", None).await;
    assert_eq!(status, 200, "removed, the password alone signs in");
}
