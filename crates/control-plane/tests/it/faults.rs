//! Faults of the control plane's own process and of PostgreSQL (T29, T30): a `kill -9` of
//! the real binary while deploys are enqueued and while one runs, and a PostgreSQL that
//! restarts or loses its backends while the control plane serves.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::deploy::{LIMIT, app, containerfile, fetch, processes_mentioning};
use serde_json::{Value, json};
use sqlx::PgPool;
use wisehosting_control_plane::dev::postgres::{self, Binaries, Layout, RunAs};
use wisehosting_proto::ServerMessage;
use wisehosting_proto::messages::{Hello, JobAccepted, JobResult};
use wisehosting_testkit::{
    RawWorker, TestRepo, UserSession, WorkerProcess, create_worker, create_worker_in, eventually,
    fresh_database, spawn_control_plane_on, spawn_control_plane_with, spawn_worker_with_secret, test_config,
};

const SECRET: &str = "0123456789abcdef0123456789abcdef-faults";
const JOIN_SECRET: &str = "0123456789abcdef0123456789abcdef-join";
const POLL: Duration = Duration::from_millis(100);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `wisehosting serve` as its own process, on a fixed port so a restart is found again.
struct Served {
    child: Child,
    base_url: String,
}

impl Served {
    async fn start(database_url: &str, port: u16) -> Served {
        let child = Command::new(env!("CARGO_BIN_EXE_wisehosting"))
            .arg("serve")
            .env_remove("CONFIG_PATH")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("WH__DATABASE__URL", database_url)
            .env("WH__API_SERVER__SECRET", SECRET)
            .env("WH__WORKERS__JOIN_SECRET", JOIN_SECRET)
            .env("WH__API_SERVER__HOST", "127.0.0.1")
            .env("WH__API_SERVER__PORT", port.to_string())
            .env("WH__SINGLE_MACHINE", "true")
            .env("WH__HEARTBEAT_INTERVAL_SECS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wisehosting serve");
        let served = Served { child, base_url: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let url = format!("{}/health", served.base_url);
        let up = eventually(Duration::from_secs(30), POLL, || async {
            client.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(up, "the control plane did not come up on port {port}");
        served
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What must hold in the database whatever instant the control plane died at.
async fn assert_all_or_nothing(pool: &PgPool) {
    let checks = [
        (
            "an app without a deployment",
            "SELECT count(*) FROM apps a WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.app_id = a.id)",
        ),
        (
            "an app without its env",
            "SELECT count(*) FROM apps a WHERE NOT EXISTS (SELECT 1 FROM env_vars e WHERE e.app_id = a.id)",
        ),
        (
            "a deployment without its job",
            "SELECT count(*) FROM deployments d WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.deployment_id = d.id)",
        ),
        ("a job without its sealed payload", "SELECT count(*) FROM jobs WHERE payload_sealed IS NULL"),
        (
            "two queued deploys of one app",
            "SELECT count(*) FROM (SELECT app_id FROM jobs WHERE status = 'queued' GROUP BY app_id HAVING count(*) > 1) t",
        ),
        (
            "a queued deployment whose job is not queued",
            "SELECT count(*) FROM deployments d JOIN jobs j ON j.deployment_id = d.id WHERE d.status = 'queued' AND j.status <> 'queued'",
        ),
    ];
    for (what, sql) in checks {
        assert_eq!(scalar(pool, sql).await, 0, "found {what}");
    }
}

#[tokio::test]
async fn enqueue_is_all_or_nothing_across_control_plane_kills() {
    let url = fresh_database(true).await;
    let port = free_port();
    let mut cp = Served::start(&url, port).await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(Arc::new(UserSession::dev_login(&cp.base_url, &format!("kill{i}@example.com")).await));
    }
    let acknowledged: Arc<Mutex<Vec<i64>>> = Arc::default();
    let pool = PgPool::connect(&url).await.expect("connect");

    for round in 0..3 {
        // Every user creates an app (first round) or redeploys it, as fast as it can, while
        // the control plane is killed under it.
        let mut tasks = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let (user, acknowledged) = (user.clone(), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({"name": format!("k{i}"), "repo_url": "https://example.com/r.git", "port": 8080, "env": {"GREETING": "hi"}});
                let mut app_id: Option<i64> = None;
                loop {
                    let request = match app_id {
                        None => user.request(reqwest::Method::POST, "/api/deploy").json(&body),
                        Some(app) => user.request(reqwest::Method::POST, &format!("/api/apps/{app}/deployments")).json(&json!({})),
                    };
                    let Ok(response) = request.timeout(Duration::from_secs(10)).send().await else { break };
                    if response.status() == 409 && app_id.is_none() {
                        // Created in an earlier round: find it.
                        let apps: Value = user.get("/api/apps").await.json().await.expect("json");
                        app_id = apps.as_array().and_then(|a| a.first()).and_then(|a| a["id"].as_i64());
                        continue;
                    }
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(v) = response.json::<Value>().await else { break };
                    let id = v["deployment"]["id"].as_i64().or_else(|| v["id"].as_i64()).expect("deployment id");
                    app_id = app_id.or_else(|| v["app"]["id"].as_i64());
                    acknowledged.lock().expect("lock").push(id);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        cp.kill9();
        for t in tasks {
            t.await.expect("task");
        }
        assert_all_or_nothing(&pool).await;
        cp = Served::start(&url, port).await;
    }

    // Every deployment that was answered 201 is there: an acknowledged write is never lost.
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= users.len(), "the load ran: {} deploys acknowledged", acknowledged.len());
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM deployments").fetch_all(&pool).await.expect("ids");
    let lost: Vec<_> = acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged deployments lost: {lost:?}");

    // The restarted control plane serves the same data to the same session.
    let apps: Value = users[0].get("/api/apps").await.json().await.expect("json");
    let app = apps.as_array().and_then(|a| a.first()).expect("the first user's app");
    let again = users[0].post_json(&format!("/api/apps/{}/deployments", app["id"]), &json!({})).await;
    assert_eq!(again.status(), 201);
    assert_all_or_nothing(&pool).await;
    pool.close().await;
}

#[tokio::test]
async fn a_deploy_survives_a_control_plane_kill_and_ends_with_one_container() {
    let url = fresh_database(true).await;
    let port = free_port();
    let mut cp = Served::start(&url, port).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    let mut config = test_config(&url);
    config.api_server.secret = wisehosting_crypto::Secret::new(SECRET);
    let worker = create_worker_in(&pool, &config, "survivor").await;
    let agent = spawn_worker_with_secret(JOIN_SECRET, &worker, &cp.base_url);
    let online = Duration::from_secs(20);
    assert!(agent.wait_for(online, |s| s.connected.load(std::sync::atomic::Ordering::Relaxed)).await);

    let repo = TestRepo::new();
    let containerfile = "FROM localhost/wisehosting/busybox:latest\nRUN sleep 3 && mkdir -p /www && echo survived > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";
    repo.commit(&[("Containerfile", containerfile)], "v1");
    let user = UserSession::dev_login(&cp.base_url, "survivor@example.com").await;
    let (app_id, deployment) = user.deploy("survivor", &repo.url()).await;

    // Killed while the worker builds; back half a second later on the same address.
    let building = eventually(Duration::from_secs(30), Duration::from_millis(50), || async {
        let d: Value =
            user.get(&format!("/api/deployments/{deployment}")).await.json().await.unwrap_or_default();
        d["status"] == "building"
    })
    .await;
    assert!(building, "the deploy reached building");
    cp.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _cp = Served::start(&url, port).await;

    // The worker reconnects, says it still runs the job, and its result lands.
    let d = user.wait_deployment(deployment, Duration::from_secs(90)).await;
    assert_eq!(d["status"], "running", "{d}");
    let a: Value = user.get(&format!("/api/apps/{app_id}")).await.json().await.expect("json");
    let page = reqwest::get(format!("http://127.0.0.1:{}/", a["host_port"])).await.expect("GET").text().await;
    assert_eq!(page.expect("body").trim(), "survived");
    assert_eq!(agent.containers_of(app_id).len(), 1, "exactly one container of the app");
    let attempts =
        scalar(&pool, &format!("SELECT max(attempt)::bigint FROM jobs WHERE deployment_id = {deployment}"))
            .await;
    assert_eq!(attempts, 1, "the job was not run a second time");
    agent.stop().await;
    pool.close().await;
}

/// A private PostgreSQL cluster of this test's own, which the test may stop and start.
struct OwnCluster {
    bins: Binaries,
    run_as: RunAs,
    layout: Layout,
    running: Option<postgres::Cluster>,
    _dir: tempfile::TempDir,
}

impl OwnCluster {
    fn start() -> OwnCluster {
        let dir = tempfile::Builder::new().prefix("wh-t30-").tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let bins = Binaries::find().expect("postgres binaries");
        let run_as = RunAs::detect().expect("run as");
        let layout = Layout { root: dir.path().join("pg") };
        postgres::ensure(&bins, &run_as, &layout).expect("initdb");
        let running = Some(postgres::start(&bins, &run_as, &layout).expect("start postgres"));
        OwnCluster { bins, run_as, layout, running, _dir: dir }
    }

    fn stop(&mut self) {
        if let Some(c) = self.running.take() {
            c.stop();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.running =
            Some(postgres::start(&self.bins, &self.run_as, &self.layout).expect("restart postgres"));
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_postgres_restart_answers_503_fast_then_recovers_and_loses_no_job() {
    let mut pg = OwnCluster::start();
    let admin = PgPool::connect(&pg.layout.url("postgres")).await.expect("connect");
    sqlx::query("CREATE DATABASE wh").execute(&admin).await.expect("create database");
    admin.close().await;
    let url = pg.layout.url("wh");
    let pool = PgPool::connect(&url).await.expect("connect");
    wisehosting_control_plane::db::migrate_up(&pool).await.expect("migrate");
    pool.close().await;
    let cp = spawn_control_plane_on(&url, |c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        c.database.acquire_timeout_secs = 2;
    })
    .await;
    let user = cp.login("t30@example.com").await;
    let created = user
        .post_json(
            "/api/deploy",
            &json!({"name": "kept", "repo_url": "https://example.com/r.git", "port": 8080}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let deployment = created.json::<Value>().await.expect("json")["deployment"]["id"].as_i64().expect("id");

    // Every backend of the control plane is terminated: the next requests reconnect.
    let killer = PgPool::connect(&pg.layout.url("postgres")).await.expect("connect");
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'wh' AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&killer)
    .await
    .expect("terminate");
    killer.close().await;
    assert!(killed > 0, "the control plane had connections to terminate");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(user.get("/api/apps").await.status().as_u16());
    }
    assert!(statuses.iter().all(|s| [200, 503].contains(s)), "{statuses:?}");
    assert_eq!(
        statuses.last(),
        Some(&200),
        "the pool reconnected after the backends were killed: {statuses:?}"
    );

    // PostgreSQL goes away: requests fail fast with a clear 503, never hang or answer 500.
    pg.stop();
    for path in ["/api/apps", "/ready"] {
        let started = Instant::now();
        let response = user.get(path).await;
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 503, "{path}");
        let body: Value = response.json().await.expect("json");
        assert!(
            ["database_unavailable", "not_ready"].contains(&body["code"].as_str().unwrap_or_default()),
            "{body}"
        );
        assert!(elapsed < Duration::from_secs(10), "{path} answered only after {elapsed:?}");
    }
    let refused = user
        .post_json(
            "/api/deploy",
            &json!({"name": "during-outage", "repo_url": "https://example.com/r.git", "port": 8080}),
        )
        .await;
    assert_eq!(refused.status(), 503);

    // It comes back: the pool recovers, the job queued before is still there and is
    // dispatched exactly once, to a worker that connects now.
    pg.restart();
    let recovered =
        eventually(Duration::from_secs(20), POLL, || async { user.get("/api/apps").await.status() == 200 })
            .await;
    assert!(recovered, "the control plane recovered after PostgreSQL returned");
    let apps: Value = user.get("/api/apps").await.json().await.expect("json");
    let names: Vec<_> = apps.as_array().expect("apps").iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, vec![json!("kept")], "nothing half-written during the outage");

    let worker = wisehosting_testkit::create_worker(&cp, "t30").await;
    let mut raw = RawWorker::connect(&cp, &worker).await;
    raw.send(&Hello { version: "t".into(), ..Default::default() }).await;
    let job = loop {
        match tokio::time::timeout(Duration::from_secs(20), raw.recv()).await {
            Ok(Some(ServerMessage::Job(job))) => break *job,
            Ok(Some(_)) => continue,
            other => panic!("no job after the restart: {other:?}"),
        }
    };
    assert_eq!(job.deployment_id, Some(deployment));
    raw.send(&JobAccepted { job_id: job.job_id, attempt: job.attempt }).await;
    raw.send(&JobResult {
        job_id: job.job_id,
        attempt: job.attempt,
        ok: false,
        error: Some("t30".into()),
        ..Default::default()
    })
    .await;
    let finished = eventually(Duration::from_secs(10), POLL, || async {
        let d: Value =
            user.get(&format!("/api/deployments/{deployment}")).await.json().await.unwrap_or_default();
        d["status"] == "failed"
    })
    .await;
    assert!(finished, "the job's result was recorded");
    // Nothing is sent twice: no second job arrives.
    let again = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match raw.recv().await {
                Some(ServerMessage::Job(j)) => return Some(*j),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    assert!(!matches!(again, Ok(Some(_))), "a job was dispatched twice: {again:?}");
    drop(raw);
    cp.stop().await.expect("stop");
}

pub(crate) fn running_containers(instance: &str, app_id: i64) -> Vec<String> {
    running_containers_labelled(&[&format!("wisehosting.instance={instance}")], app_id)
}

/// The running containers of an app with every label of `labels` (`name=value`).
pub(crate) fn running_containers_labelled(labels: &[&str], app_id: i64) -> Vec<String> {
    let mut podman = std::process::Command::new("podman");
    podman.env("CONTAINERS_CONF", wisehosting_testkit::worker::containers_conf()).args(["ps", "-q"]);
    for label in labels {
        podman.arg("--filter").arg(format!("label={label}"));
    }
    let out =
        podman.arg("--filter").arg(format!("label=wisehosting.app={app_id}")).output().expect("podman ps");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_mid_deploy_leaves_one_running_version_and_no_stuck_job() {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
    })
    .await;
    let w = create_worker(&cp, "killable").await;
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // A podman run started by a killed worker may land a moment later; sweep twice.
            let _ = wisehosting_testkit::worker::remove_instance(&self.0);
            std::thread::sleep(Duration::from_secs(1));
            let _ = wisehosting_testkit::worker::remove_instance(&self.0);
            // A killed worker's `podman build` runs on by itself and may still commit a layer:
            // wait (bounded) until no podman process of this instance is left.
            for _ in 0..30 {
                if !processes_mentioning(&self.0).iter().any(|c| c.starts_with("podman")) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            // The killed worker's build cgroups (a restarted worker removes its own).
            wisehosting_worker::runtime::cgroup::prune_stale(&self.0);
            // A build killed half-way leaves its last layer untagged; this test's layers carry
            // its label.
            let podman = || {
                let mut cmd = std::process::Command::new("podman");
                cmd.env("CONTAINERS_CONF", wisehosting_testkit::worker::containers_conf());
                cmd
            };
            if let Ok(out) = podman()
                .args(["images", "-q", "--filter"])
                .arg(format!("label=wisehosting.test={}", self.0))
                .output()
            {
                let ids: Vec<String> =
                    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
                if !ids.is_empty() {
                    let _ = podman().arg("rmi").arg("--").args(&ids).output();
                }
            }
        }
    }
    let mut worker = WorkerProcess::start(cp.config.workers.join_secret.expose(), &w, &cp.base_url).await;
    let instance = worker.instance.clone();
    let _cleanup = Cleanup(instance.clone());
    // This test's images carry a label of their own, so what killed builds leave is found.
    let containerfile =
        |body: &str| containerfile(body).replacen('\n', &format!("\nLABEL wisehosting.test={instance}\n"), 1);
    let user = cp.login("kill@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &containerfile("round 0"))], "v0");
    let created: Value = user
        .post_json("/api/deploy", &json!({"name": "killed", "repo_url": repo.url(), "port": 8080}))
        .await
        .json()
        .await
        .expect("json");
    let app_id = created["app"]["id"].as_i64().expect("id");
    let first = created["deployment"]["id"].as_i64().expect("id");
    let done = user.wait_deployment(first, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");

    // Kill -9 at different points of a deploy (clone, build, run, health check), restart, and
    // check the invariants each time. A kill while `podman stop` retires the old container
    // (about 1.7 s in) can leave podman reporting it "stopping": see the closing note of this
    // issue; that window is not covered yet.
    for (round, delay_ms) in [150u64, 400, 800, 1200].into_iter().enumerate() {
        repo.commit(&[("Containerfile", &containerfile(&format!("round {}", round + 1)))], "next");
        let next: Value = user
            .post_json(&format!("/api/apps/{app_id}/deployments"), &json!({}))
            .await
            .json()
            .await
            .expect("json");
        let next = next["id"].as_i64().expect("id");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        worker.restart().await;
        let d = user.wait_deployment(next, LIMIT).await;
        let status = d["status"].as_str().unwrap_or_default().to_string();
        assert!(status == "running" || status == "failed", "round {round}: {d}");
        let mut one = false;
        for _ in 0..100 {
            let active: i64 =
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('dispatched', 'running')")
                    .fetch_one(&cp.db)
                    .await
                    .expect("count");
            if running_containers(&instance, app_id).len() == 1 && active == 0 {
                one = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(one, "round {round}: containers {:?}", running_containers(&instance, app_id));
        let a = app(&user, app_id).await;
        let port = a["host_port"].as_i64().expect("port");
        let current = a["current_deployment_id"].as_i64().expect("current");
        let expected = if status == "running" { next } else { current };
        assert_eq!(current, expected, "round {round}");
        let body = fetch(port).await;
        assert!(body.starts_with("round "), "round {round}: the current version serves: {body}");
    }
    worker.kill9();
}
