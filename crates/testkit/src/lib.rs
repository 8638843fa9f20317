//! Test helpers shared by every crate's integration tests.
//!
//! - [`fresh_database`]: an empty database of its own, or one cloned from a migrated template
//!   (created once per migration set, under an advisory lock, so parallel test processes share
//!   it and each clone takes milliseconds).
//! - [`spawn_control_plane`]: a real [`App`] on a free loopback port over a fresh database,
//!   with a typed client.
//! - [`worker`]: worker rows, hand-driven connections for attacks, the real agent.
//! - [`proxy`]: a TCP proxy that can cut a link, for outage tests.
//! - [`dns`]: a local DNS server with TXT records the test sets (domain verification).
//! - [`cloudflare`]: a stand-in for Cloudflare's custom-hostnames API.
//!
//! The PostgreSQL server comes from `WH_TEST_PG_URL` (a URL to its `postgres` database), which
//! `scripts/test.sh` sets after starting a throwaway cluster; tests never rely on a server that
//! something else left running.

// Test support code: a failed set-up should stop the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod challtestsrv;
pub mod cloudflare;
pub mod dns;
pub mod gitprovider;
pub mod gitserver;
pub mod netns;
pub mod oidc;
pub mod pebble;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod tls;
pub mod worker;

pub use cloudflare::FakeCloudflare;
pub use dns::TestDns;
pub use gitprovider::{FakeGitProvider, FakeRepo};
pub use gitserver::GitHttpsServer;
pub use netns::{HostsEntry, Namespace, PrivateCanary, TcpCanary};
pub use oidc::{Browser, FakeOidc, Forgery};
pub use process::{ControlPlaneProcess, WorkerProcess, WorkerSetup};
pub use proxy::{CutProxy, FailoverProxy};
pub use receiver::{Received, Reply, SmtpSink, WebhookReceiver};
pub use worker::{
    BeatingWorker, RawWorker, SpawnedWorker, TestWorker, create_worker, create_worker_in,
    create_worker_in_zone, open_ws, spawn_worker, spawn_worker_with_secret, spawn_worker_with_settings,
};

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wisehosting_control_plane::config::DatabaseUrl;
use wisehosting_control_plane::domain::DeploymentStatus;
use wisehosting_control_plane::startup::StartupError;
use wisehosting_control_plane::{App, Config, db};
use wisehosting_crypto::Secret;

/// The admin URL of the test server, from `WH_TEST_PG_URL`.
pub fn admin_url() -> String {
    std::env::var("WH_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "WH_TEST_PG_URL is not set: run the tests with scripts/test.sh, which starts a throwaway PostgreSQL and sets it"
        )
    })
}

/// `url` with its database name replaced by `database`.
pub fn url_for(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a URL with a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(wisehosting_crypto::random_bytes::<6>()))
}

/// Name of the template for the current migration set.
fn template_name() -> String {
    let mut material = String::new();
    for m in db::MIGRATOR.iter() {
        material.push_str(&format!("{}:{};", m.version, hex::encode(&m.checksum)));
    }
    let digest = wisehosting_crypto::sha256_hex(material.as_bytes());
    format!("wh_template_{}", &digest[..16])
}

async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url()).await.expect("connect to the test PostgreSQL (WH_TEST_PG_URL)")
}

async fn ensure_template() -> String {
    let name = template_name();
    let mut conn = admin().await;
    sqlx::query("SELECT pg_advisory_lock(742001)").execute(&mut conn).await.expect("advisory lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .expect("look up template");
    if !exists {
        let building = format!("{name}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building}")).execute(&mut conn).await.expect("drop");
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut conn)
            .await
            .expect("create template");
        let pool = PgPool::connect(&url_for(&admin_url(), &building)).await.expect("connect template");
        db::migrate_up(&pool).await.expect("migrate template");
        // `close` can wait a long time for a connection in a multi-threaded runtime; bound it,
        // then end whatever session is left so the template can be renamed and cloned.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pool.close()).await;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(&building)
            .execute(&mut conn)
            .await
            .expect("end template sessions");
        // The migrating session may linger a moment after the pool closes; retry the rename.
        let mut tries = 0;
        loop {
            match sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}")).execute(&mut conn).await
            {
                Ok(_) => break,
                Err(e) if tries < 50 && e.to_string().contains("being accessed by other users") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => {
                    let who: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                        "SELECT application_name, state, query FROM pg_stat_activity WHERE datname = $1",
                    )
                    .bind(&building)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                    panic!("rename the template database: {e}; sessions on it: {who:?}")
                }
            }
        }
    }
    sqlx::query("SELECT pg_advisory_unlock(742001)").execute(&mut conn).await.expect("unlock");
    let _ = conn.close().await;
    name
}

/// A database of this test's own: migrated (cloned from the template) or empty.
pub async fn fresh_database(migrated: bool) -> String {
    let name = unique_name("wh_test");
    let template = if migrated { Some(ensure_template().await) } else { None };
    let mut conn = admin().await;
    let sql = match &template {
        Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
        None => format!("CREATE DATABASE {name}"),
    };
    let mut tries = 0;
    loop {
        match sqlx::query(&sql).execute(&mut conn).await {
            Ok(_) => break,
            // Two clones of one template at the same instant can collide; try again.
            Err(e) if tries < 20 && e.to_string().contains("being accessed by other users") => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    let _ = conn.close().await;
    url_for(&admin_url(), &name)
}

/// A config for tests: loopback, a free port, random master and join secrets, a small pool.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::default();
    config.api_server.host = [127, 0, 0, 1].into();
    config.api_server.port = 0;
    config.api_server.secret = Secret::new(hex::encode(wisehosting_crypto::random_bytes::<32>()));
    config.workers.join_secret = Secret::new(hex::encode(wisehosting_crypto::random_bytes::<32>()));
    config.api_server.metrics_token = Secret::new(hex::encode(wisehosting_crypto::random_bytes::<16>()));
    config.database.url = Some(DatabaseUrl::new(database_url));
    config.database.min_connections = 0;
    config.database.max_connections = 5;
    config.internal_api.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    // No test reaches a public CA; the ACME tests point it at their own pebble.
    config.acme.directory_url = String::new();
    config
}

/// A running control plane over its own database.
pub struct TestControlPlane {
    pub addr: SocketAddr,
    pub base_url: String,
    pub internal_addr: Option<SocketAddr>,
    pub database_url: String,
    pub db: PgPool,
    pub hub: wisehosting_control_plane::hub::Hub,
    pub config: Config,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), StartupError>>>,
}

pub async fn spawn_control_plane() -> TestControlPlane {
    spawn_control_plane_with(|_| {}).await
}

/// The `p` quantile (0.0 to 1.0) of `samples`, for benchmarks' figures.
pub fn percentile<T: PartialOrd + Copy>(samples: &mut [T], p: f64) -> T {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:`), 0 when unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// A Containerfile on the local busybox base image whose httpd serves `body` (and a newline)
/// at `/` on port 8080.
pub fn page_containerfile(body: &str) -> String {
    format!(
        "FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www && echo '{body}' > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
    )
}

/// Worker `deploy:` settings (indented lines) pointing the language presets at the local base
/// images `scripts/preset-images.sh` builds.
pub const LOCAL_PRESET_IMAGES: &str = "  node_image: localhost/wisehosting/node:bookworm\n  python_image: localhost/wisehosting/python:bookworm\n  go_image: localhost/wisehosting/go:bookworm\n  rust_image: localhost/wisehosting/rust:bookworm\n  runtime_image: localhost/wisehosting/debian:bookworm\n";

/// A node app (no dependencies) answering `<greeting> <what previous.txt holds>` on `$PORT`;
/// its `build` script is `build`.
pub fn node_app(greeting: &str, build: &str) -> Vec<(String, String)> {
    vec![
        (
            "package.json".into(),
            serde_json::json!({"name": "sample", "version": "1.0.0", "private": true,
                "scripts": {"start": "node server.js", "build": build}})
            .to_string(),
        ),
        (
            "server.js".into(),
            format!(
                "const fs = require('fs');\nconst http = require('http');\nhttp.createServer((req, res) => {{\n  let previous = '';\n  try {{ previous = fs.readFileSync('previous.txt', 'utf8').trim(); }} catch (e) {{}}\n  res.end('{greeting} ' + process.env.NODE_ENV + ' [' + previous + ']\\n');\n}}).listen(process.env.PORT || 8080);\n"
            ),
        ),
    ]
}

/// The whole platform for one test: a control plane in single-machine mode (1 s heartbeats,
/// then `adjust`), one real worker agent named `worker` connected to it, and `email` signed in.
pub async fn spawn_platform(
    worker: &str,
    email: &str,
    adjust: impl FnOnce(&mut Config),
) -> (TestControlPlane, SpawnedWorker, UserSession) {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        adjust(c);
    })
    .await;
    let w = create_worker(&cp, worker).await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    let connected = agent
        .wait_for(std::time::Duration::from_secs(15), |s| {
            s.connected.load(std::sync::atomic::Ordering::Relaxed)
        })
        .await;
    assert!(connected, "the worker {worker} connects");
    let user = cp.login(email).await;
    (cp, agent, user)
}

/// Like [`spawn_control_plane`], with the config adjusted first.
pub async fn spawn_control_plane_with(adjust: impl FnOnce(&mut Config)) -> TestControlPlane {
    spawn_control_plane_on(&fresh_database(true).await, adjust).await
}

/// A control plane over `database_url` (already migrated), with the config adjusted first.
pub async fn spawn_control_plane_on(
    database_url: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestControlPlane {
    try_spawn_control_plane_on(database_url, adjust).await.expect("build the control plane")
}

/// A control plane whose sign-in is the stand-in provider `idp`. It listens on a port chosen
/// before it starts, since its `public_url` (the redirect URI's base) must name it; should
/// another process take that port first, it tries another.
pub async fn spawn_control_plane_with_oidc(idp: &FakeOidc, adjust: impl Fn(&mut Config)) -> TestControlPlane {
    let database = fresh_database(true).await;
    let mut last = None;
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let spawned = try_spawn_control_plane_on(&database, |c| {
            c.api_server.port = port;
            c.api_server.public_url = Some(format!("http://127.0.0.1:{port}"));
            c.oidc.issuer_url = idp.issuer();
            c.oidc.client_id = idp.client_id.clone();
            c.oidc.client_secret = Secret::new(idp.client_secret.clone());
            adjust(c);
        })
        .await;
        match spawned {
            Ok(cp) => return cp,
            Err(e @ StartupError::Bind { .. }) => last = Some(e),
            Err(e) => panic!("build the control plane: {e}"),
        }
    }
    panic!("no free port for the control plane: {last:?}")
}

/// Like [`spawn_control_plane_on`], returning the start-up error.
pub async fn try_spawn_control_plane_on(
    database_url: &str,
    adjust: impl FnOnce(&mut Config),
) -> Result<TestControlPlane, StartupError> {
    let database_url = database_url.to_string();
    let mut config = test_config(&database_url);
    adjust(&mut config);
    let app = App::build(config.clone()).await?;
    let addr = app.local_addr().expect("local addr");
    let internal_addr = app.internal_addr();
    let db = app.db();
    let hub = app.hub();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run());
    Ok(TestControlPlane {
        addr,
        base_url: format!("http://{addr}"),
        internal_addr,
        database_url,
        db,
        hub,
        config,
        client: reqwest::Client::builder().no_proxy().build().expect("client"),
        shutdown,
        task: Some(task),
    })
}

impl TestControlPlane {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// `GET /metrics` as a scraper does it, with `api_server.metrics_token`.
    pub async fn metrics(&self) -> String {
        let token = self.config.api_server.metrics_token.expose();
        let response =
            self.client.get(self.url("/metrics")).bearer_auth(token).send().await.expect("GET /metrics");
        assert_eq!(response.status(), 200, "the metrics answer with the token");
        response.text().await.expect("metrics text")
    }

    /// GETs `path`, expects `status`, and decodes the JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, status: u16) -> T {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), status, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// Stops the app gracefully and returns how `run` ended.
    pub async fn stop(mut self) -> Result<(), StartupError> {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        task.await.expect("join the app task")
    }
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A signed-in user of a test control plane (dev login), with a client that sends the cookie.
pub struct UserSession {
    pub cookie: String,
    pub user_id: i64,
    base: String,
    client: reqwest::Client,
}

impl TestControlPlane {
    /// Signs in with the dev login (the control plane must run with `single_machine`).
    pub async fn login(&self, email: &str) -> UserSession {
        UserSession::dev_login(&self.base_url, email).await
    }
}

impl UserSession {
    /// Signs in with the dev login at the control plane at `base_url`.
    pub async fn dev_login(base_url: &str, email: &str) -> UserSession {
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let response = client
            .post(format!("{base_url}/api/auth/dev-login"))
            .json(&serde_json::json!({ "email": email }))
            .send()
            .await
            .expect("dev-login");
        assert_eq!(response.status(), 200, "dev-login");
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        let body: serde_json::Value = response.json().await.expect("json");
        UserSession {
            cookie,
            user_id: body["user"]["id"].as_i64().expect("id"),
            base: base_url.to_string(),
            client,
        }
    }

    /// The session a [`Browser`] holds after signing in (with the provider), at `base_url`.
    pub async fn from_browser(base_url: &str, browser: &Browser) -> UserSession {
        let value = browser.cookies.get("wh_session").expect("the browser has a session");
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let cookie = format!("wh_session={value}");
        let me: serde_json::Value = client
            .get(format!("{base_url}/api/me"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET /api/me")
            .json()
            .await
            .expect("json");
        let user_id = me["id"]
            .as_i64()
            .or_else(|| me["user"]["id"].as_i64())
            .unwrap_or_else(|| panic!("an id in {me}"));
        UserSession { cookie, user_id, base: base_url.to_string(), client }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).header("cookie", &self.cookie)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path).send().await.expect("GET")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path).json(body).send().await.expect("POST")
    }

    /// `POST /api/deploy` of `repo_url` (port 8080, no env) as `name`: (app id, deployment id).
    pub async fn deploy(&self, name: &str, repo_url: &str) -> (i64, i64) {
        let response = self
            .post_json("/api/deploy", &serde_json::json!({"name": name, "repo_url": repo_url, "port": 8080}))
            .await;
        assert_eq!(response.status(), 201, "deploy {name}");
        let created: serde_json::Value = response.json().await.expect("json");
        (
            created["app"]["id"].as_i64().expect("app id"),
            created["deployment"]["id"].as_i64().expect("deployment id"),
        )
    }

    /// `POST /api/apps/:id/deployments` (a new deployment of the app's branch): its id.
    pub async fn redeploy(&self, app_id: i64) -> i64 {
        let response =
            self.post_json(&format!("/api/apps/{app_id}/deployments"), &serde_json::json!({})).await;
        assert_eq!(response.status(), 201, "redeploy of app {app_id}");
        let d: serde_json::Value = response.json().await.expect("json");
        d["id"].as_i64().unwrap_or_else(|| panic!("a deployment id in {d}"))
    }

    /// Polls a deployment until it reaches a final state (or the limit), returning it.
    pub async fn wait_deployment(&self, id: i64, limit: std::time::Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let d: serde_json::Value =
                self.get(&format!("/api/deployments/{id}")).await.json().await.expect("json");
            let status = d["status"].as_str().and_then(DeploymentStatus::parse);
            if status.is_some_and(DeploymentStatus::is_final) || tokio::time::Instant::now() > deadline {
                return d;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// A git repository made by the test, with helpers to commit files.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = tempfile::Builder::new().prefix("wh-repo").tempdir_in("/tmp").expect("repo dir");
        let repo = TestRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    pub fn git(&self, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-C"])
            .arg(self.dir.path())
            .args(args)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    }

    /// The commit `HEAD` names.
    pub fn head(&self) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git rev-parse");
        assert!(out.status.success(), "git rev-parse HEAD");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes files and commits them.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) {
        for (path, text) in files {
            let full = self.dir.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(full, text).expect("write");
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `check` every `every` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: std::time::Duration, every: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}
