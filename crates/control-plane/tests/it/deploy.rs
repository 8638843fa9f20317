//! The deploy pipeline end to end: a real control plane, a real agent, real git repositories
//! made by the test, real podman builds and containers on the local busybox base image.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use wisehosting_testkit::{
    SpawnedWorker, TcpCanary, TestControlPlane, TestRepo, UserSession, create_worker, eventually,
    spawn_control_plane_with, spawn_platform,
};

pub(crate) const LIMIT: Duration = Duration::from_secs(120);
/// How often the tests look again while waiting for something to happen.
pub(crate) const POLL: Duration = Duration::from_millis(200);

pub(crate) fn containerfile(body: &str) -> String {
    format!(
        "FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www && echo '{body}' > /www/index.html\nEXPOSE 8080\nCMD [\"sh\", \"-c\", \"echo runtime-hello-$GREETING; exec httpd -f -p 8080 -h /www\"]\n"
    )
}

pub(crate) async fn fetch(port: i64) -> String {
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    client.get(format!("http://127.0.0.1:{port}/")).send().await.expect("GET app").text().await.expect("body")
}

/// Waits until the app's published port answers with a page holding `body`.
pub(crate) async fn serves(user: &UserSession, app_id: i64, body: &str) -> bool {
    eventually(LIMIT, POLL, || async {
        match app(user, app_id).await["host_port"].as_i64() {
            Some(port) => fetch(port).await.contains(body),
            None => false,
        }
    })
    .await
}

/// A control plane in single-machine mode, a real agent connected to it, a signed-in user and
/// an empty repository.
pub(crate) async fn platform(
    worker: &str,
    email: &str,
) -> (TestControlPlane, SpawnedWorker, UserSession, TestRepo) {
    let (cp, agent, user) = spawn_platform(worker, email, |_| {}).await;
    (cp, agent, user, TestRepo::new())
}

/// Like [`platform`], for a worker with more `deploy:` settings (YAML lines indented by two
/// spaces), online before this returns.
pub(crate) async fn platform_with_settings(
    worker: &str,
    email: &str,
    settings: &str,
) -> (TestControlPlane, SpawnedWorker, UserSession) {
    platform_with_config(worker, email, settings, |_| {}).await
}

/// [`platform_with_settings`] with the control plane's config adjusted too.
pub(crate) async fn platform_with_config(
    worker: &str,
    email: &str,
    settings: &str,
    adjust: impl FnOnce(&mut wisehosting_control_plane::Config),
) -> (TestControlPlane, SpawnedWorker, UserSession) {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        adjust(c);
    })
    .await;
    let w = create_worker(&cp, worker).await;
    let agent = wisehosting_testkit::spawn_worker_with_settings(&cp, &w, &cp.base_url, settings);
    let online = agent.wait_for(LIMIT, |s| s.connected.load(std::sync::atomic::Ordering::Relaxed)).await;
    assert!(online, "the worker came online");
    let user = cp.login(email).await;
    (cp, agent, user)
}

/// None of `secrets` in any answer about the app and its deployment.
pub(crate) async fn assert_no_api_answer_shows(
    user: &UserSession,
    app_id: i64,
    deployment: i64,
    secrets: &[&str],
) {
    for path in [
        format!("/api/apps/{app_id}"),
        format!("/api/apps/{app_id}/deployments"),
        format!("/api/apps/{app_id}/env"),
        format!("/api/deployments/{deployment}"),
        format!("/api/deployments/{deployment}/log"),
        format!("/api/apps/{app_id}/logs?tail=1000"),
        "/api/apps".to_string(),
    ] {
        let body = user.get(&path).await.text().await.expect("text");
        for secret in secrets {
            assert!(!body.contains(secret), "{path} shows a secret");
        }
    }
}

/// The control of a network test: git run by hand, without the worker's guards (and with
/// the `-c` options in `config`), connects to `canary` when asked for `url`.
pub(crate) async fn unguarded_git_reaches(
    canary: &TcpCanary,
    config: &[String],
    url: &str,
    ca_file: Option<&std::path::Path>,
) {
    let mut git = std::process::Command::new("git");
    for option in config {
        git.arg("-c").arg(option);
    }
    git.args(["ls-remote", url]).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(ca) = ca_file {
        git.env("GIT_SSL_CAINFO", ca);
    }
    let out = git.output().expect("git");
    assert!(!out.status.success(), "the canary is no git host");
    let reached = eventually(LIMIT, POLL, || async { canary.hits() >= 1 }).await;
    assert!(reached, "unguarded git did not reach the canary: {}", String::from_utf8_lossy(&out.stderr));
}

/// The whole database as `pg_dump` writes it.
pub(crate) fn pg_dump(cp: &TestControlPlane) -> String {
    let dump = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .arg("--dbname")
        .arg(&cp.database_url)
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    String::from_utf8_lossy(&dump.stdout).into_owned()
}

/// Deploys `body` and waits until its deployment ends; returns the app id and the deployment.
pub(crate) async fn deploy_and_wait(user: &UserSession, body: Value) -> (i64, Value) {
    let created: Value = user.post_json("/api/deploy", &body).await.json().await.expect("json");
    let app_id = created["app"]["id"].as_i64().expect("app id");
    let d = user.wait_deployment(created["deployment"]["id"].as_i64().expect("deployment id"), LIMIT).await;
    (app_id, d)
}

/// Whose fault the deployment's job failed by, as the worker reported it.
pub(crate) async fn job_fault(cp: &TestControlPlane, deployment: i64) -> Option<String> {
    sqlx::query_scalar("SELECT fault FROM jobs WHERE deployment_id = $1")
        .bind(deployment)
        .fetch_one(&cp.db)
        .await
        .expect("the deployment's job")
}

pub(crate) async fn app(user: &UserSession, id: i64) -> Value {
    user.get(&format!("/api/apps/{id}")).await.json().await.expect("app json")
}

/// Watches the arguments of every process, and the environments of podman, git and conmon
/// processes (the deploy's), for any of `needles`, until [`ProcessWatch::finish`].
pub(crate) struct ProcessWatch {
    watching: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl ProcessWatch {
    pub(crate) fn start(needles: Vec<String>) -> ProcessWatch {
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let on = watching.clone();
        let thread = std::thread::spawn(move || {
            let mut hits = Vec::new();
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    let ours = cmd.starts_with("podman")
                        || cmd.starts_with("git")
                        || cmd.contains("/podman ")
                        || cmd.contains("conmon");
                    let environ = if ours {
                        std::fs::read(entry.path().join("environ")).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let environ = String::from_utf8_lossy(&environ);
                    if needles.iter().any(|s| cmd.contains(s.as_str()) || environ.contains(s.as_str())) {
                        hits.push(cmd);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            hits
        });
        ProcessWatch { watching, thread }
    }

    /// Stops watching; the command lines of processes where a needle was seen.
    pub(crate) fn finish(self) -> Vec<String> {
        self.watching.store(false, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("watcher")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_becomes_a_running_container_and_redeploys_replace_it() {
    // Keeping three images per app, so the last step sees the oldest pruned.
    let (cp, agent, user) = platform_with_settings("deployer", "dev@example.com", "  keep_images: 3\n").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &containerfile("hello v1"))], "v1");

    // T20: a secret env value is watched for in process arguments and environments while the
    // deploy runs, and afterwards in a pg_dump, the platform's logs and every API answer.
    let secret = format!("s3cr3t-{}", hex::encode(wisehosting_crypto::random_bytes::<8>()));
    // A repository token gets the same watch (a local repository does not use it; an
    // https:// one is watched in `a_git_token_goes_only_to_the_repositorys_https_host`).
    let git_token = format!("ghp_{}", hex::encode(wisehosting_crypto::random_bytes::<12>()));
    let watcher = ProcessWatch::start(vec![secret.clone(), git_token.clone()]);
    let created = user
        .post_json(
            "/api/deploy",
            &json!({"name": "Hello App", "repo_url": repo.url(), "branch": "main", "framework": "dockerfile",
                    "dockerfile_path": null, "port": 8080, "env": {"GREETING": "hi-canary", "SECRET_TOKEN": secret}, "git_token": git_token}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let app_id = created["app"]["id"].as_i64().expect("app id");
    assert_eq!(created["app"]["slug"], "hello-app");
    let first = created["deployment"]["id"].as_i64().expect("deployment id");
    let d = user.wait_deployment(first, LIMIT).await;
    assert_eq!(d["status"], "running", "{d}");
    assert!(d["image_id"].as_str().unwrap_or_default().starts_with("sha256:"));
    assert_eq!(d["commit"].as_str().map(str::len), Some(40), "the built commit is recorded: {d}");
    let a = app(&user, app_id).await;
    assert_eq!(a["status"], "running");
    assert_eq!(a["current_deployment_id"], first);
    let port = a["host_port"].as_i64().expect("host port");
    assert_eq!(fetch(port).await.trim(), "hello v1");
    let containers = agent.containers_of(app_id);
    assert_eq!(containers.len(), 1, "exactly one container: {containers:?}");
    assert_eq!(containers[0]["Labels"]["wisehosting.app"], app_id.to_string());
    assert_eq!(containers[0]["Labels"]["wisehosting.deployment"], first.to_string());
    // T24: the container runs the image id the build produced.
    assert_eq!(
        containers[0]["ImageID"].as_str().map(|i| i.trim_start_matches("sha256:")),
        d["image_id"].as_str().map(|i| i.trim_start_matches("sha256:")),
        "run by image id"
    );
    let hits = watcher.finish();
    assert!(hits.is_empty(), "the secret appeared in a process's arguments or environment: {hits:?}");
    let dump = pg_dump(&cp);
    assert!(dump.len() > 1000);
    assert!(!dump.contains(&secret), "the secret is in a pg_dump");
    assert!(!dump.contains(&git_token), "the git token is in a pg_dump");
    assert_eq!(app(&user, app_id).await["has_git_token"], true);
    assert_no_api_answer_shows(&user, app_id, first, &[&secret, &git_token]).await;
    let log: Value = user.get(&format!("/api/deployments/{first}/log")).await.json().await.expect("log");
    assert!(log["log"].as_str().unwrap_or_default().contains("checked out"), "{log}");
    // The worker follows the container: its output reaches the app's log tail, and its
    // figures reach the hub.
    let runtime_line = eventually(Duration::from_secs(20), POLL, || async {
        let tail: Value =
            user.get(&format!("/api/apps/{app_id}/logs?tail=50")).await.json().await.expect("json");
        tail["lines"].as_array().is_some_and(|l| {
            l.iter().any(|x| x["stream"] == "runtime" && x["line"] == "runtime-hello-hi-canary")
        })
    })
    .await;
    assert!(runtime_line, "the container's output reached the log bus with the app's env");
    let placed_on = app(&user, app_id).await["worker_id"].as_i64().expect("placed");
    eventually(Duration::from_secs(20), POLL, || async {
        cp.hub.stats().latest(app_id, placed_on).is_some()
    })
    .await;
    assert!(
        cp.hub.stats().latest(app_id, placed_on).is_some_and(|f| f.stat.memory_bytes > 0),
        "per-app figures arrived from the app's worker"
    );

    // A new commit and a redeploy: the new page, one container, the old deployment superseded.
    repo.commit(&[("Containerfile", &containerfile("hello v2"))], "v2");
    let second = user.post_json(&format!("/api/apps/{app_id}/deployments"), &json!({})).await;
    assert_eq!(second.status(), 201);
    let second = second.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let d = user.wait_deployment(second, LIMIT).await;
    assert_eq!(d["status"], "running", "{d}");
    let a = app(&user, app_id).await;
    let port = a["host_port"].as_i64().expect("host port");
    assert_eq!(fetch(port).await.trim(), "hello v2");
    let old: Value = user.get(&format!("/api/deployments/{first}")).await.json().await.expect("json");
    assert_eq!(old["status"], "superseded");
    // The old container drains after the switch, then goes.
    eventually(Duration::from_secs(10), POLL, || async { agent.containers_of(app_id).len() == 1 }).await;
    let containers = agent.containers_of(app_id);
    assert_eq!(containers.len(), 1, "the old container is gone: {containers:?}");
    assert_eq!(containers[0]["Labels"]["wisehosting.deployment"], second.to_string());

    // A build that fails: the deployment fails with the build's lines; v2 keeps serving.
    repo.commit(
        &[("Containerfile", "FROM localhost/wisehosting/busybox:latest\nRUN echo about-to-fail && false\n")],
        "broken",
    );
    let broken = user.post_json(&format!("/api/apps/{app_id}/deployments"), &json!({})).await;
    let broken = broken.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let d = user.wait_deployment(broken, LIMIT).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap_or_default().contains("podman build failed"), "{d}");
    assert_eq!(job_fault(&cp, broken).await.as_deref(), Some("user"), "a failing build is the user's to fix");
    assert_eq!(fetch(port).await.trim(), "hello v2", "the previous version still serves");
    assert_eq!(app(&user, app_id).await["status"], "running");

    // A container that exits at once: failed with its last lines; v2 still serves.
    repo.commit(&[("Containerfile", "FROM localhost/wisehosting/busybox:latest\nCMD [\"sh\", \"-c\", \"echo crashing-now; exit 3\"]\n")], "crash");
    let crash = user.post_json(&format!("/api/apps/{app_id}/deployments"), &json!({})).await;
    let crash = crash.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let d = user.wait_deployment(crash, LIMIT).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap_or_default().contains("crashing-now"), "{d}");
    assert_eq!(
        job_fault(&cp, crash).await.as_deref(),
        Some("user"),
        "an app that will not start is the user's"
    );
    assert_eq!(fetch(port).await.trim(), "hello v2");
    assert_eq!(agent.containers_of(app_id).len(), 1, "the crashed container was removed");

    // A changed env takes effect on restart: the current version is re-created with it.
    let put = user
        .request(Method::PUT, &format!("/api/apps/{app_id}/env"))
        .json(&json!({"GREETING": "changed", "SECRET_TOKEN": secret}))
        .send()
        .await
        .expect("put env");
    assert_eq!(put.status(), 200);
    let restart = user.post_json(&format!("/api/apps/{app_id}/restart"), &json!({})).await;
    assert_eq!(restart.status(), 202);
    let restarted = eventually(Duration::from_secs(30), POLL, || async {
        let tail: Value =
            user.get(&format!("/api/apps/{app_id}/logs?tail=100")).await.json().await.expect("json");
        tail["lines"].as_array().is_some_and(|l| l.iter().any(|x| x["line"] == "runtime-hello-changed"))
    })
    .await;
    assert!(restarted, "the restarted container runs with the new env");
    let serving = eventually(Duration::from_secs(10), POLL, || async {
        let a = app(&user, app_id).await;
        match a["host_port"].as_i64() {
            Some(new_port) if a["status"] == "running" && new_port != port => {
                fetch(new_port).await.trim() == "hello v2"
            }
            _ => false,
        }
    })
    .await;
    assert!(serving, "after the restart the app serves the same version on its new port");

    // One more version: the app's images beyond the newest three deployments' (keep_images)
    // are pruned.
    repo.commit(&[("Containerfile", &containerfile("hello v3"))], "v3");
    let third = user.post_json(&format!("/api/apps/{app_id}/deployments"), &json!({})).await;
    let third = third.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let done = user.wait_deployment(third, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    let first_tag = format!(":d{first}");
    let pruned = eventually(Duration::from_secs(20), POLL, || async {
        let tags = agent.image_tags_of(app_id);
        // At most three tags, not the first deployment's, and no untagged leftovers.
        !tags.is_empty()
            && tags.len() <= 3
            && !tags.iter().any(|t| t.ends_with(&first_tag) || t.contains("<none>"))
    })
    .await;
    assert!(pruned, "old images pruned: {:?}", agent.image_tags_of(app_id));

    // Env values are sealed at rest and masked unless revealed (audited).
    let dump: String = sqlx::query_scalar("SELECT string_agg(value_sealed, ' ') FROM env_vars")
        .fetch_one(&cp.db)
        .await
        .expect("dump");
    assert!(!dump.contains(&secret) && !dump.contains("changed"), "env values are sealed at rest");
    let masked: Value = user.get(&format!("/api/apps/{app_id}/env")).await.json().await.expect("json");
    assert_eq!(masked["env"]["GREETING"], "********");
    let revealed: Value =
        user.get(&format!("/api/apps/{app_id}/env?reveal=true")).await.json().await.expect("json");
    assert_eq!(revealed["env"]["GREETING"], "changed");

    // Delete: the container goes.
    let deleted = user.request(Method::DELETE, &format!("/api/apps/{app_id}")).send().await.expect("delete");
    assert_eq!(deleted.status(), 202);
    let gone = eventually(Duration::from_secs(20), POLL, || async {
        agent.containers_of(app_id).is_empty()
            && user.get(&format!("/api/apps/{app_id}")).await.status() == 404
    })
    .await;
    assert!(gone, "the app and its container were removed");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_runs() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let user = cp.login("bad@example.com").await;
    let canary = "/tmp/wh-argv-canary";
    let _ = std::fs::remove_file(canary);
    let base = json!({"name": "ok", "repo_url": "https://example.com/r.git", "branch": "main", "framework": "dockerfile", "port": 8080, "env": {}});
    let cases = [
        ("branch", json!({"branch": format!("--upload-pack=touch {canary}")})),
        ("name", json!({"name": "$(id)!!"})),
        ("dockerfile_path", json!({"dockerfile_path": "../Dockerfile"})),
        ("repo_url", json!({"repo_url": "ext::sh -c touch% /tmp/x"})),
        ("repo_url", json!({"repo_url": "http://example.com/r.git"})),
        ("env", json!({"env": {"lower": "x"}})),
        ("port", json!({"port": 70000})),
        ("framework", json!({"framework": "php"})),
        ("git_token", json!({"git_token": "two words"})),
    ];
    for (field, patch) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let response = user.post_json("/api/deploy", &body).await;
        let status = response.status().as_u16();
        let err: Value = response.json().await.expect("json");
        if field == "name" {
            // `$(id)!!` is a fine name: it becomes the slug `id`, never a command.
            assert_eq!(status, 201, "{err}");
            continue;
        }
        assert_eq!(status, 422, "{field}: {err}");
        assert_eq!(err["code"], "invalid_input");
        assert!(err["message"].as_str().unwrap_or_default().starts_with(field), "{field}: {err}");
    }
    assert!(!std::path::Path::new(canary).exists());
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&cp.db).await.expect("count");
    assert_eq!(jobs, 1, "only the valid request queued a job");
}

#[tokio::test]
async fn another_users_apps_and_deployments_answer_404() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let alice = cp.login("alice@example.com").await;
    let bob = cp.login("bob@example.com").await;
    let created: Value = alice
        .post_json(
            "/api/deploy",
            &json!({"name": "alice-app", "repo_url": "https://example.com/a.git", "port": 8080}),
        )
        .await
        .json()
        .await
        .expect("json");
    let app = created["app"]["id"].as_i64().expect("id");
    let deployment = created["deployment"]["id"].as_i64().expect("id");
    for path in [
        format!("/api/apps/{app}"),
        format!("/api/apps/{app}/deployments"),
        format!("/api/apps/{app}/env"),
        format!("/api/apps/{app}/logs"),
        format!("/api/deployments/{deployment}"),
        format!("/api/deployments/{deployment}/log"),
    ] {
        let response = bob.get(&path).await;
        assert_eq!(response.status(), 404, "{path}");
        let text = response.text().await.expect("text");
        assert!(!text.contains("alice"), "{path}: {text}");
    }
    for path in [
        format!("/api/apps/{app}/deployments"),
        format!("/api/apps/{app}/restart"),
        format!("/api/deployments/{deployment}/cancel"),
    ] {
        assert_eq!(bob.post_json(&path, &json!({})).await.status(), 404, "{path}");
    }
    assert_eq!(
        bob.request(Method::DELETE, &format!("/api/apps/{app}")).send().await.expect("delete").status(),
        404
    );
    let listed: Value = bob.get("/api/apps").await.json().await.expect("json");
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn dev_login_is_404_outside_single_machine_mode_and_cross_site_posts_are_refused() {
    let cp = spawn_control_plane_with(|_| {}).await;
    let response = cp
        .client
        .post(cp.url("/api/auth/dev-login"))
        .json(&json!({"email": "a@b"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let user = cp.login("csrf@example.com").await;
    let cross = user
        .request(Method::POST, "/api/deploy")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"name": "x", "repo_url": "https://example.com/x.git"}))
        .send()
        .await
        .expect("send");
    assert_eq!(cross.status(), 403);
    let foreign = user
        .request(Method::POST, "/api/deploy")
        .header("origin", "https://evil.example")
        .json(&json!({"name": "x", "repo_url": "https://example.com/x.git"}))
        .send()
        .await
        .expect("send");
    assert_eq!(foreign.status(), 403);
    let plain = user
        .request(Method::POST, "/api/deploy")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(plain.status(), 415);
    assert_eq!(
        cp.client.get(cp.url("/api/apps")).send().await.expect("send").status(),
        401,
        "no session, no apps"
    );
}

pub(crate) fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_deploy_while_it_builds_stops_the_build_and_keeps_the_old_version() {
    let (_cp, agent, user, repo) = platform("canceller", "cancel@example.com").await;
    repo.commit(&[("Containerfile", &containerfile("stable"))], "v1");
    let (app_id, first) = user.deploy("cancel-app", &repo.url()).await;
    let done = user.wait_deployment(first, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    let port = app(&user, app_id).await["host_port"].as_i64().expect("port");

    // The RUN step sleeps for a number of seconds no other process uses, to be found by it.
    let seconds = 100_000 + rand::random::<u32>() % 800_000;
    let step = format!("sleep {seconds}");
    repo.commit(
        &[(
            "Containerfile",
            &format!("FROM localhost/wisehosting/busybox:latest\nRUN echo slow-build-started && {step}\n"),
        )],
        "slow",
    );
    let slow: Value = user
        .post_json(&format!("/api/apps/{app_id}/deployments"), &json!({}))
        .await
        .json()
        .await
        .expect("json");
    let slow = slow["id"].as_i64().expect("id");
    let tag = format!("{}-app{app_id}:d{slow}", agent.instance);
    let building = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        let d: Value = user.get(&format!("/api/deployments/{slow}")).await.json().await.expect("json");
        d["status"] == "building" && !processes_mentioning(&tag).is_empty()
    })
    .await;
    assert!(building, "the slow build started");
    let cancelled = user.post_json(&format!("/api/deployments/{slow}/cancel"), &json!({})).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(cancelled.json::<Value>().await.expect("json")["status"], "cancelled");
    let stopped =
        eventually(Duration::from_secs(10), POLL, || async { processes_mentioning(&tag).is_empty() }).await;
    assert!(stopped, "the build process was stopped: {:?}", processes_mentioning(&tag));
    // Its RUN step too: a runc container in a session of its own, which a kill of podman
    // alone would leave running.
    let step_stopped =
        eventually(Duration::from_secs(10), POLL, || async { processes_mentioning(&step).is_empty() }).await;
    assert!(step_stopped, "the RUN step was stopped: {:?}", processes_mentioning(&step));
    assert_eq!(fetch(port).await.trim(), "stable", "the previous version still serves");
    let containers = agent.containers_of(app_id);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["Labels"]["wisehosting.deployment"], first.to_string());
    let d: Value = user.get(&format!("/api/deployments/{slow}")).await.json().await.expect("json");
    assert_eq!(d["status"], "cancelled", "a late result did not overwrite the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_keeps_exiting_is_restarted_with_growing_back_off_and_reported_crashed() {
    let (_cp, agent, user, repo) = platform("crasher", "crash@example.com").await;
    // Serves long enough to pass its health check, then dies, again and again.
    repo.commit(
        &[("Containerfile", "FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www && echo up > /www/index.html\nCMD [\"sh\", \"-c\", \"httpd -p 8080 -h /www; sleep 3; exit 7\"]\n")],
        "flaky",
    );
    let created: Value = user
        .post_json("/api/deploy", &json!({"name": "flaky", "repo_url": repo.url(), "port": 8080}))
        .await
        .json()
        .await
        .expect("json");
    let app_id = created["app"]["id"].as_i64().expect("id");
    let deployment = created["deployment"]["id"].as_i64().expect("id");
    let d = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(d["status"], "running", "{d}");
    let crashed = eventually(Duration::from_secs(60), POLL, || async {
        app(&user, app_id).await["status"] == "crashed"
    })
    .await;
    assert!(crashed, "the app shows crashed: {}", app(&user, app_id).await);

    // The supervisor starts it again after 1 s, 2 s, 4 s, 8 s …: each run lasts ~3 s, so the
    // gaps between starts grow (podman's policy would restart at once, every time).
    let containers = agent.containers_of(app_id);
    assert_eq!(containers.len(), 1, "one container, started again and again: {containers:?}");
    let id = containers[0]["Id"].as_str().expect("id").to_string();
    let mut starts: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while starts.len() < 4 && std::time::Instant::now() < deadline {
        let out = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", wisehosting_testkit::worker::containers_conf())
            .args(["inspect", "--format", "{{.State.StartedAt.UnixMilli}}", &id])
            .output()
            .expect("podman inspect");
        let started = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !started.is_empty() && starts.last() != Some(&started) {
            starts.push(started);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ms: Vec<i64> = starts.iter().filter_map(|s| s.parse().ok()).collect();
    assert!(ms.len() >= 4, "the container was started again: {starts:?}");
    let gaps: Vec<i64> = ms.windows(2).map(|w| w[1] - w[0]).collect();
    let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
    assert!(last >= first + 2500, "the back-off grows: gaps between starts {gaps:?} ms");
    let state = app(&user, app_id).await;
    assert!(["crashed", "running"].contains(&state["status"].as_str().unwrap_or_default()), "{state}");
}

/// T36: an app that prints a 3 MB line neither closes the worker's link (a frame over 2 MiB
/// would) nor fills memory: one line of 8 KiB is stored, and the lines after it flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_printing_a_3_mb_line_keeps_the_link_up_and_stores_one_8_kib_line() {
    let (_cp, agent, user, repo) = platform("long-lines", "lines@example.com").await;
    let sessions = agent.status.sessions.load(std::sync::atomic::Ordering::Relaxed);
    let connection = agent.status.connection_id();
    // httpd in the background (it daemonizes), then a 3 MB line every 2 s, so the worker's
    // follower, which starts after the health check, sees one live.
    let file = "FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www && echo ok > /www/index.html\nCMD [\"sh\", \"-c\", \"httpd -p 8080 -h /www; while true; do head -c 3000000 /dev/zero | tr '\\\\0' L; echo; echo after-the-long-line; sleep 2; done\"]\n";
    repo.commit(&[("Containerfile", file)], "long line");
    let (app_id, d) =
        deploy_and_wait(&user, json!({"name": "long-liner", "repo_url": repo.url(), "port": 8080})).await;
    assert_eq!(d["status"], "running", "{d}");
    let runtime_lines = || async {
        let tail: Value =
            user.get(&format!("/api/apps/{app_id}/logs?tail=1000")).await.json().await.expect("json");
        tail["lines"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|x| x["stream"] == "runtime")
                    .filter_map(|x| x["line"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    // Two long lines, each followed by the short one: the link carried them and kept going.
    let seen = eventually(Duration::from_secs(30), POLL, || async {
        let lines = runtime_lines().await;
        lines
            .windows(3)
            .filter(|w| {
                w[0] == "after-the-long-line" && w[1].starts_with("LLLL") && w[2] == "after-the-long-line"
            })
            .count()
            >= 2
    })
    .await;
    let lines = runtime_lines().await;
    assert!(
        seen,
        "no long line followed by the next one: {:?}",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    // Lines written whole after the follower started (each after a short line): the first one
    // may be the tail of a line already half written when podman's follower attached.
    let long: Vec<usize> = lines
        .windows(2)
        .filter(|w| w[0] == "after-the-long-line" && w[1].starts_with('L'))
        .map(|w| w[1].len())
        .collect();
    assert!(!long.is_empty(), "{:?}", lines.iter().map(String::len).collect::<Vec<_>>());
    assert!(long.iter().all(|n| *n == 8 * 1024), "every 3 MB line is one line of 8 KiB: {long:?}");
    assert_eq!(
        agent.status.sessions.load(std::sync::atomic::Ordering::Relaxed),
        sessions,
        "the link was never closed and reopened"
    );
    assert_eq!(agent.status.connection_id(), connection);
}
