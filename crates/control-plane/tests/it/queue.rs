//! The job queue without podman: supersede, fencing of stale and foreign messages (T17, T28),
//! connections trusted with jobs only after a signed hello (T34),
//! cancel of a queued deploy, the stuck-job rescue, and log lines reaching the log bus and its
//! live stream.

use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_proto::ServerMessage;
use wisehosting_proto::messages::{JobAccepted, JobProgress, JobResult, Log};
use wisehosting_testkit::{
    RawWorker, TestControlPlane, UserSession, create_worker, eventually, spawn_control_plane_with,
};

async fn deploy(user: &UserSession, name: &str) -> (i64, i64) {
    let created: Value = user
        .post_json(
            "/api/deploy",
            &json!({"name": name, "repo_url": "https://example.com/r.git", "port": 8080}),
        )
        .await
        .json()
        .await
        .expect("json");
    (created["app"]["id"].as_i64().expect("app"), created["deployment"]["id"].as_i64().expect("deployment"))
}

/// Sends a log line for `app` on `raw` and waits until the app's log shows it: frames of one
/// connection are handled in order, so everything `raw` sent before has been handled too.
async fn barrier(raw: &mut RawWorker, user: &UserSession, app: i64, tag: &str) {
    raw.send(&Log {
        app_id: app,
        deployment_id: None,
        stream: wisehosting_proto::messages::LogStream::Runtime,
        lines: vec![tag.into()],
    })
    .await;
    let seen = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        let tail: Value =
            user.get(&format!("/api/apps/{app}/logs?tail=1000")).await.json().await.expect("json");
        tail["lines"].as_array().is_some_and(|l| l.iter().any(|x| x["line"] == tag))
    })
    .await;
    assert!(seen, "the control plane handled the frames before {tag}");
}

async fn deployment_status(user: &UserSession, id: i64) -> String {
    let d: Value = user.get(&format!("/api/deployments/{id}")).await.json().await.expect("json");
    d["status"].as_str().unwrap_or_default().to_string()
}

async fn deployment_statuses(user: &UserSession, ids: &[i64]) -> Vec<String> {
    let mut statuses = Vec::with_capacity(ids.len());
    for id in ids {
        statuses.push(deployment_status(user, *id).await);
    }
    statuses
}

async fn job_status(cp: &TestControlPlane, deployment: i64) -> (String, i32) {
    sqlx::query_as("SELECT status, attempt FROM jobs WHERE deployment_id = $1")
        .bind(deployment)
        .fetch_one(&cp.db)
        .await
        .expect("job")
}

pub(crate) async fn single() -> TestControlPlane {
    spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
    })
    .await
}

#[tokio::test]
async fn a_newer_deploy_supersedes_a_queued_older_one() {
    let cp = single().await;
    let user = cp.login("q@example.com").await;
    let (app, first) = deploy(&user, "queued").await;
    let second: Value =
        user.post_json(&format!("/api/apps/{app}/deployments"), &json!({})).await.json().await.expect("json");
    let second = second["id"].as_i64().expect("id");
    assert_eq!(deployment_status(&user, first).await, "superseded");
    assert_eq!(deployment_status(&user, second).await, "queued");
    assert_eq!(job_status(&cp, first).await.0, "cancelled");
}

#[tokio::test]
async fn a_queued_deploy_can_be_cancelled_and_a_final_one_cannot() {
    let cp = single().await;
    let user = cp.login("c@example.com").await;
    let (_, deployment) = deploy(&user, "cancel-me").await;
    let response = user.post_json(&format!("/api/deployments/{deployment}/cancel"), &json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(deployment_status(&user, deployment).await, "cancelled");
    assert_eq!(job_status(&cp, deployment).await.0, "cancelled");
    let again = user.post_json(&format!("/api/deployments/{deployment}/cancel"), &json!({})).await;
    assert_eq!(again.status(), 409);
}

/// Waits for the next job frame on a raw worker connection.
async fn next_job(raw: &mut RawWorker) -> wisehosting_proto::messages::Job {
    loop {
        match raw.recv().await {
            Some(ServerMessage::Job(job)) => return *job,
            Some(_) => continue,
            None => panic!("the connection closed before a job arrived"),
        }
    }
}

/// The text frames a socket receives within `within`, until it closes (T34).
async fn frames_within(ws: &mut wisehosting_testkit::worker::Ws, within: Duration) -> (Vec<Value>, bool) {
    use futures_util::StreamExt;
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return (frames, false),
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                frames.push(serde_json::from_str(text.as_str()).expect("a JSON frame"))
            }
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                return (frames, true);
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn a_connection_with_a_valid_token_but_no_hello_displaces_nothing_and_gets_no_job() {
    // Heartbeats every 30 s: the hand-driven live connection stays online through the wait.
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 30;
    })
    .await;
    let w = create_worker(&cp, "displaced").await;
    let mut live = RawWorker::connect_online(&cp, &w).await;
    let live_id = cp.hub.connection_id(w.id);
    // A JWT is a bearer token: whoever holds it can upgrade, but cannot sign a hello.
    let token = cp.token(&w).await;
    let (mut silent, _) = wisehosting_testkit::open_ws(&cp, &token).await.expect("upgrade");
    let (frames, closed) = frames_within(&mut silent, Duration::from_millis(500)).await;
    assert_eq!(frames.iter().map(|f| f["t"].clone()).collect::<Vec<_>>(), vec![json!("welcome")]);
    assert!(!closed);
    assert_eq!(cp.hub.connection_id(w.id), live_id, "the live connection is still the worker's");

    let user = cp.login("displaced@example.com").await;
    let (app, _) = deploy(&user, "not-for-silent").await;
    let job = next_job(&mut live).await;
    assert_eq!(job.app_id, app, "the live session gets the job");
    live.send(&wisehosting_proto::messages::Heartbeat { cpu_pct: 7.0, ..Default::default() }).await;
    assert!(
        wisehosting_testkit::eventually(Duration::from_secs(5), Duration::from_millis(50), || async {
            cp.hub.snapshot(w.id).map(|h| h.cpu_pct) == Some(7.0)
        })
        .await,
        "the live session keeps working"
    );

    // The silent one was sent nothing more, and is closed once the hello's time is up.
    let limit = wisehosting_control_plane::hub::HELLO_TIMEOUT + Duration::from_secs(5);
    let (frames, closed) = frames_within(&mut silent, limit).await;
    let types: Vec<Value> = frames.iter().map(|f| f["t"].clone()).collect();
    assert_eq!(types, vec![json!("error")], "{frames:?}");
    assert_eq!(frames[0]["p"]["code"], "hello_timeout");
    assert!(closed, "closed after the hello timeout");
    assert!(cp.hub.is_connected(w.id) && cp.hub.connection_id(w.id) == live_id);
}

#[tokio::test]
async fn a_leased_job_obeys_only_its_own_worker_and_its_current_attempt() {
    let cp = single().await;
    let a = create_worker(&cp, "lease-a").await;
    let b = create_worker(&cp, "lease-b").await;
    let mut raw_a = RawWorker::connect_online(&cp, &a).await;
    let user = cp.login("fence@example.com").await;
    let (app, deployment) = deploy(&user, "fenced").await;
    let job = next_job(&mut raw_a).await;
    assert_eq!((job.app_id, job.deployment_id, job.attempt), (app, Some(deployment), 1));
    assert_eq!(job.spec.payload()["repo_url"], "https://example.com/r.git");

    // Worker B, online with a connection of its own, tries to report A's job: ignored (T17).
    let mut raw_b = RawWorker::connect_online(&cp, &b).await;
    raw_b
        .send(&JobResult {
            job_id: job.job_id,
            attempt: 1,
            ok: true,
            host_port: Some(1),
            ..Default::default()
        })
        .await;
    raw_b
        .send(&Log {
            app_id: app,
            deployment_id: Some(deployment),
            stream: wisehosting_proto::messages::LogStream::Build,
            lines: vec!["forged by b".into()],
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_status(&cp, deployment).await.0, "dispatched");
    let log: Value =
        user.get(&format!("/api/deployments/{deployment}/log")).await.json().await.expect("json");
    assert!(!log["log"].as_str().unwrap_or_default().contains("forged"), "{log}");

    // The lease is rescued and given a new attempt (as after a silent worker); the old
    // attempt's late messages change nothing (T28).
    sqlx::query("UPDATE jobs SET attempt = attempt + 1 WHERE id = $1")
        .bind(job.job_id)
        .execute(&cp.db)
        .await
        .expect("bump");
    raw_a.send(&JobAccepted { job_id: job.job_id, attempt: 1 }).await;
    raw_a
        .send(&JobProgress { job_id: job.job_id, attempt: 1, phase: wisehosting_proto::Phase::Building })
        .await;
    raw_a
        .send(&JobResult {
            job_id: job.job_id,
            attempt: 1,
            ok: true,
            host_port: Some(1),
            ..Default::default()
        })
        .await;
    barrier(&mut raw_a, &user, app, "after-the-stale-attempt").await;
    assert_eq!(job_status(&cp, deployment).await, ("dispatched".into(), 2));
    assert_eq!(deployment_status(&user, deployment).await, "queued");

    // The current attempt counts: accepted → running, progress, then the result.
    raw_a.send(&JobAccepted { job_id: job.job_id, attempt: 2 }).await;
    raw_a
        .send(&JobProgress { job_id: job.job_id, attempt: 2, phase: wisehosting_proto::Phase::Building })
        .await;
    raw_a
        .send(&Log {
            app_id: app,
            deployment_id: Some(deployment),
            stream: wisehosting_proto::messages::LogStream::Build,
            lines: vec!["\u{1b}[32mstep 1\u{1b}[0m".into()],
        })
        .await;
    let reached = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        deployment_status(&user, deployment).await == "building"
    })
    .await;
    assert!(reached, "the deployment reached building");
    raw_a
        .send(&JobResult {
            job_id: job.job_id,
            attempt: 2,
            ok: true,
            image_id: Some("sha256:x".into()),
            host_port: Some(4242),
            container_id: Some("c".into()),
            error: None,
            commit: Some("abcdef1234567".into()),
            fault: None,
        })
        .await;
    let reached = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        deployment_status(&user, deployment).await == "running"
    })
    .await;
    assert!(reached, "the deployment reached running");
    let d: Value = user.get(&format!("/api/deployments/{deployment}")).await.json().await.expect("json");
    assert_eq!(d["commit"], "abcdef1234567");
    let app_json: Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("json");
    assert_eq!((app_json["status"].as_str(), app_json["host_port"].as_i64()), (Some("running"), Some(4242)));
    let log: Value =
        user.get(&format!("/api/deployments/{deployment}/log")).await.json().await.expect("json");
    assert!(log["log"].as_str().unwrap_or_default().contains("step 1\n"), "ANSI stripped: {log}");
    // A replayed result after the end changes nothing either.
    raw_a
        .send(&JobResult {
            job_id: job.job_id,
            attempt: 2,
            ok: false,
            error: Some("late".into()),
            ..Default::default()
        })
        .await;
    barrier(&mut raw_a, &user, app, "after-the-late-result").await;
    assert_eq!(deployment_status(&user, deployment).await, "running");
}

#[tokio::test]
async fn a_job_stuck_past_the_horizon_is_failed_with_a_reason() {
    let cp = single().await;
    let w = create_worker(&cp, "stuck").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let user = cp.login("stuck@example.com").await;
    let (_, deployment) = deploy(&user, "stuck-app").await;
    let _ = next_job(&mut raw).await;
    sqlx::query("UPDATE jobs SET dispatched_at = now() - interval '16 minutes' WHERE deployment_id = $1")
        .bind(deployment)
        .execute(&cp.db)
        .await
        .expect("age");
    // The dispatcher runs the same rescue on its own wake-ups, one control plane's pass at a
    // time (the other skips its turn); whichever runs first fails it.
    let fixed = wisehosting_control_plane::store::jobs::fail_stuck(&cp.db).await.expect("rescue");
    assert!(fixed <= 1);
    let failed = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        let d: Value = user.get(&format!("/api/deployments/{deployment}")).await.json().await.expect("json");
        d["status"] == "failed"
    })
    .await;
    assert!(failed, "the stuck job's deployment fails");
    let d: Value = user.get(&format!("/api/deployments/{deployment}")).await.json().await.expect("json");
    assert!(d["error"].as_str().unwrap_or_default().contains("15 minutes"), "{d}");
}

#[tokio::test]
async fn log_lines_reach_the_tail_and_the_live_stream_of_their_app_only() {
    let cp = single().await;
    let w = create_worker(&cp, "logger").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let user = cp.login("logs@example.com").await;
    let (app, _) = deploy(&user, "logging").await;
    let job = next_job(&mut raw).await;
    assert_eq!(job.app_id, app);
    let stream = user.get(&format!("/api/apps/{app}/logs/stream")).await;
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/event-stream"));
    let mut body = stream;
    raw.send(&Log {
        app_id: app,
        deployment_id: None,
        stream: wisehosting_proto::messages::LogStream::Runtime,
        lines: vec!["hello from the app\0".into()],
    })
    .await;
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = body.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("hello from the app") {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the live stream carried the line: {seen}");
    assert!(seen.contains("event: runtime"), "{seen}");
    let tail: Value = user.get(&format!("/api/apps/{app}/logs?tail=10")).await.json().await.expect("json");
    assert_eq!(tail["lines"][0]["line"], "hello from the app", "NUL stripped: {tail}");
}

/// Reads a live stream until it ends; false when it is still open after `limit`.
async fn ends_within(mut body: reqwest::Response, limit: Duration) -> bool {
    tokio::time::timeout(limit, async { while let Ok(Some(_)) = body.chunk().await {} }).await.is_ok()
}

#[tokio::test]
async fn a_live_log_stream_ends_at_logout_and_a_user_holds_at_most_ten() {
    let cp = single().await;
    let w = create_worker(&cp, "streamer").await;
    let mut raw = RawWorker::connect(&cp, &w).await;
    raw.send(&wisehosting_proto::messages::Hello::default()).await;
    let user = cp.login("streams@example.com").await;
    let (app, _) = deploy(&user, "streaming").await;

    // Ten streams open; the eleventh is refused by name; closing one frees a place.
    let mut open = Vec::new();
    for _ in 0..10 {
        let stream = user.get(&format!("/api/apps/{app}/logs/stream")).await;
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    let refused = user.get(&format!("/api/apps/{app}/logs/stream")).await;
    assert_eq!(refused.status(), 429);
    let err: Value = refused.json().await.expect("json");
    assert_eq!(err["code"], "rate_limited");
    assert!(err["message"].as_str().unwrap_or_default().contains("live log streams"), "{err}");
    drop(open.pop());
    // The server notices the closed connection when it next writes or polls: look again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = user.get(&format!("/api/apps/{app}/logs/stream")).await;
        if again.status() == 200 {
            open.push(again);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a closed stream never gave its place back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The streams are live; after logout each ends within seconds, though lines keep coming.
    let other = cp.login("other-streams@example.com").await;
    let (other_app, _) = deploy(&other, "others").await;
    let others_stream = other.get(&format!("/api/apps/{other_app}/logs/stream")).await;
    let logout = user.post_json("/api/auth/logout", &json!({})).await;
    assert!(logout.status().is_success(), "{}", logout.status());
    raw.send(&Log {
        app_id: app,
        deployment_id: None,
        stream: wisehosting_proto::messages::LogStream::Runtime,
        lines: vec!["after".into()],
    })
    .await;
    for stream in open {
        assert!(ends_within(stream, Duration::from_secs(6)).await, "a stream outlived its session");
    }
    // Another user's stream is not touched.
    assert!(!ends_within(others_stream, Duration::from_secs(3)).await, "another session's stream ended");
    assert_eq!(user.get(&format!("/api/apps/{app}/logs/stream")).await.status(), 401);
}

#[tokio::test]
async fn a_worker_that_comes_back_without_its_job_fails_it_at_once_and_one_that_kept_it_does_not() {
    let cp = single().await;
    let w = create_worker(&cp, "restarter").await;
    let user = cp.login("restart@example.com").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let (_, kept) = deploy(&user, "kept-job").await;
    let kept_job = next_job(&mut raw).await;
    raw.send(&JobAccepted { job_id: kept_job.job_id, attempt: kept_job.attempt }).await;
    let accepted = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        job_status(&cp, kept).await.0 == "running"
    })
    .await;
    assert!(accepted, "the job was accepted");
    drop(raw);

    // The same process reconnects and still runs the job: nothing changes.
    let mut raw = RawWorker::connect(&cp, &w).await;
    let running =
        vec![wisehosting_proto::messages::RunningJob { job_id: kept_job.job_id, attempt: kept_job.attempt }];
    raw.hello(wisehosting_proto::messages::Hello { running_jobs: running, ..Default::default() }).await;
    assert_eq!(job_status(&cp, kept).await.0, "running");
    drop(raw);

    // A restarted process (kill -9) knows no job: the deploy fails now, not in 15 minutes.
    let _raw = RawWorker::connect_online(&cp, &w).await;
    let d: Value = user.get(&format!("/api/deployments/{kept}")).await.json().await.expect("json");
    assert_eq!(d["status"], "failed");
    assert!(d["error"].as_str().unwrap_or_default().contains("restarted"), "{d}");
    assert_eq!(job_status(&cp, kept).await.0, "failed");
}

#[tokio::test]
async fn a_repository_token_reaches_the_worker_in_the_job_and_can_be_replaced_or_removed() {
    let cp = single().await;
    let w = create_worker(&cp, "token-w").await;
    let mut raw = RawWorker::connect(&cp, &w).await;
    raw.send(&wisehosting_proto::messages::Hello { version: "t".into(), ..Default::default() }).await;
    let user = cp.login("token@example.com").await;
    let created: Value = user
        .post_json(
            "/api/deploy",
            &json!({"name": "private", "repo_url": "https://example.com/p.git", "git_token": "glpat-first"}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(created["app"]["has_git_token"], true, "{created}");
    assert!(!created.to_string().contains("glpat-first"));
    let app = created["app"]["id"].as_i64().expect("app");
    let job = next_job(&mut raw).await;
    assert_eq!(job.spec.payload()["git_token"], "glpat-first");
    let finish = |job: wisehosting_proto::messages::Job| JobResult {
        job_id: job.job_id,
        attempt: job.attempt,
        ok: false,
        error: Some("done".into()),
        ..Default::default()
    };
    raw.send(&finish(job)).await;

    // Replaced: the next deploy carries the new one. Removed: none.
    for (token, expected) in [(json!("glpat-second"), json!("glpat-second")), (Value::Null, Value::Null)] {
        let put = user
            .request(reqwest::Method::PUT, &format!("/api/apps/{app}/git-token"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), 200);
        let body: Value = put.json().await.expect("json");
        assert_eq!(body["has_git_token"], !token.is_null());
        let redeploy = user.post_json(&format!("/api/apps/{app}/deployments"), &json!({})).await;
        assert_eq!(redeploy.status(), 201);
        let job = next_job(&mut raw).await;
        assert_eq!(job.spec.payload()["git_token"], expected);
        raw.send(&finish(job)).await;
    }
    let bad = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app}/git-token"))
        .json(&json!({ "token": "with\nnewline" }))
        .send()
        .await
        .expect("put");
    assert_eq!(bad.status(), 422);
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, detail::text FROM audit_events WHERE action LIKE 'app.git_token%' ORDER BY id",
    )
    .fetch_all(&cp.db)
    .await
    .expect("audit");
    let actions: Vec<_> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["app.git_token_set", "app.git_token_removed"]);
    assert!(audit.iter().all(|(_, d)| !d.contains("glpat")), "the audit holds no token");
}

#[tokio::test]
async fn parallel_deploys_cannot_pass_the_plans_app_limit_together() {
    let cp = single().await;
    let user = cp.login("racer@example.com").await;
    let attempts = (0..12).map(|i| {
        let user = &user;
        async move {
            user.post_json(
                "/api/deploy",
                &json!({"name": format!("racer-{i}"), "repo_url": "https://example.com/r.git", "port": 8080}),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "the free plan's 5 apps: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 402),
        "over the limit is 402 plan_limit: {statuses:?}"
    );
    let apps: i64 = sqlx::query_scalar("SELECT count(*) FROM apps").fetch_one(&cp.db).await.expect("count");
    assert_eq!(apps, 5);
}

/// Results sent in one burst (as a busy worker finishes several jobs) are applied together,
/// each under its own fence: two deploys succeed and one fails, its error kept without the
/// NUL byte PostgreSQL's text refuses (which would otherwise lose that result, and with it the
/// others applied in the same transaction).
#[tokio::test]
async fn acceptances_and_results_sent_together_are_each_applied_and_a_stale_one_or_a_nul_loses_none() {
    let cp = single().await;
    let w = create_worker(&cp, "burst").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let user = cp.login("burst@example.com").await;
    let mut deployments = Vec::new();
    for name in ["burst-a", "burst-b", "burst-c"] {
        deployments.push(deploy(&user, name).await.1);
    }
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(next_job(&mut raw).await);
    }
    // Accepted together (applied in one statement), a stale acceptance among them.
    for (i, job) in jobs.iter().enumerate() {
        if i == 1 {
            raw.send(&JobAccepted { job_id: job.job_id, attempt: job.attempt + 1 }).await;
        }
        raw.send(&JobAccepted { job_id: job.job_id, attempt: job.attempt }).await;
    }
    let started = eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        deployment_statuses(&user, &deployments).await.iter().all(|s| s == "cloning")
    })
    .await;
    assert!(started, "every acceptance was applied: each deployment started");
    for job in &jobs {
        let (status, attempt): (String, i32) =
            sqlx::query_as("SELECT status, attempt FROM jobs WHERE id = $1")
                .bind(job.job_id)
                .fetch_one(&cp.db)
                .await
                .expect("job");
        assert_eq!((status.as_str(), attempt), ("running", job.attempt), "the job runs on its own lease");
    }
    for (i, job) in jobs.iter().enumerate() {
        let failed = i == 1;
        raw.send(&JobResult {
            job_id: job.job_id,
            attempt: job.attempt,
            ok: !failed,
            error: failed.then(|| "the build broke\u{0} here".to_string()),
            host_port: (!failed).then_some(40_000 + i as u16),
            container_id: (!failed).then(|| format!("c{i}")),
            ..Default::default()
        })
        .await;
    }
    let settled = eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        deployment_statuses(&user, &deployments)
            .await
            .iter()
            .all(|s| matches!(s.as_str(), "running" | "failed"))
    })
    .await;
    assert!(settled, "every result was applied");
    let by_job = |job: i64| {
        let db = cp.db.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>("SELECT status, error FROM jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&db)
                .await
                .expect("job")
        }
    };
    assert_eq!(by_job(jobs[0].job_id).await, ("succeeded".into(), None));
    assert_eq!(by_job(jobs[1].job_id).await, ("failed".into(), Some("the build broke here".into())));
    assert_eq!(by_job(jobs[2].job_id).await, ("succeeded".into(), None));
    assert_eq!(deployment_statuses(&user, &deployments).await, ["running", "failed", "running"]);
}

#[tokio::test]
async fn jobs_of_one_app_queued_behind_a_running_one_are_sent_one_at_a_time_in_order() {
    let cp = single().await;
    let w = create_worker(&cp, "in-order").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let user = cp.login("in-order@example.com").await;
    let (app, _) = deploy(&user, "in-order").await;
    let first = next_job(&mut raw).await;
    raw.send(&JobAccepted { job_id: first.job_id, attempt: first.attempt }).await;
    raw.send(&JobResult {
        job_id: first.job_id,
        attempt: first.attempt,
        ok: true,
        host_port: Some(40_100),
        container_id: Some("c-first".into()),
        ..Default::default()
    })
    .await;
    let running = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        let a: Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("json");
        a["status"] == "running"
    })
    .await;
    assert!(running, "the first deploy switched");

    // A restart is leased; a stop and a start queue behind it and become ready together when it
    // ends.
    let queued = |path: &'static str| {
        let user = &user;
        async move {
            let r = user.post_json(&format!("/api/apps/{app}/{path}"), &json!({})).await;
            assert_eq!(r.status(), 202, "{path}");
            r.json::<Value>().await.expect("json")["job_id"].as_i64().expect("job id")
        }
    };
    let restart = queued("restart").await;
    let leased = next_job(&mut raw).await;
    assert_eq!(leased.job_id, restart);
    let stop = queued("stop").await;
    let start = queued("start").await;
    raw.send(&JobAccepted { job_id: leased.job_id, attempt: leased.attempt }).await;
    raw.send(&JobResult { job_id: leased.job_id, attempt: leased.attempt, ok: true, ..Default::default() })
        .await;

    // Each comes alone, in the order queued, once the one before it ended.
    for expected in [stop, start] {
        let job = tokio::time::timeout(Duration::from_secs(10), next_job(&mut raw))
            .await
            .expect("the next job of the app is sent (the queue is not stuck)");
        assert_eq!(job.job_id, expected, "jobs of one app in the order queued");
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE app_id = $1 AND status IN ('dispatched', 'running')",
        )
        .bind(app)
        .fetch_one(&cp.db)
        .await
        .expect("count");
        assert_eq!(open, 1, "one leased job per app at a time");
        raw.send(&JobAccepted { job_id: job.job_id, attempt: job.attempt }).await;
        raw.send(&JobResult { job_id: job.job_id, attempt: job.attempt, ok: true, ..Default::default() })
            .await;
    }
}

/// An index's counters as of now (flushed by the backends that used it).
async fn index_counts(pool: &sqlx::PgPool, index: &str) -> (i64, i64) {
    sqlx::query_as("SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = $1")
        .bind(index)
        .fetch_one(pool)
        .await
        .expect("index counters")
}

/// A burst of queued jobs the planner's statistics predate (they were gathered when every job
/// had finished: both partial indexes of queued jobs looked empty) must not let the claim answer
/// "an older unfinished job of this app?" by scanning every queued job for each job it judges:
/// the probes go to `jobs_unfinished_app_idx`, by app. The queue's head is 1,000 jobs of apps
/// held elsewhere (skipped), so a probe reading `jobs_queued_idx` would read hundreds of
/// entries per job judged; reading it by windows, the claim reads each queued entry about once.
#[tokio::test]
async fn a_claim_after_a_burst_the_statistics_predate_probes_each_jobs_siblings_by_app() {
    use wisehosting_control_plane::store::jobs;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&wisehosting_testkit::fresh_database(true).await)
        .await
        .expect("pool");
    // The statistics stay those of the history until the end (autovacuum would refresh them
    // within a minute: this holds the burst's first minute still).
    sqlx::query("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .expect("hold stats");
    let workers: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO workers (name, api_key_hash, mac_key_sealed)
         SELECT 'burst-' || n, encode(sha256(n::text::bytea), 'hex'), '' FROM generate_series(1, 2) n RETURNING id",
    )
    .fetch_all(&pool)
    .await
    .expect("workers");
    let (here, elsewhere) = (workers[0], workers[1]);
    sqlx::query(
        "WITH u AS (INSERT INTO users (email) VALUES ('burst@example.com') RETURNING id)
         INSERT INTO apps (user_id, slug, name, status, repo_url, worker_id)
         SELECT u.id, 'burst-' || n, 'burst-' || n, 'running', 'https://example.com/r.git',
                CASE WHEN n <= 1000 THEN $2 ELSE $1 END
         FROM u, generate_series(1, 2000) n",
    )
    .bind(here)
    .bind(elsewhere)
    .execute(&pool)
    .await
    .expect("apps");
    sqlx::query("INSERT INTO jobs (kind, app_id, status) SELECT 'restart', a.id, 'succeeded' FROM apps a, generate_series(1, 5)")
        .execute(&pool)
        .await
        .expect("history");
    sqlx::query("ANALYZE jobs").execute(&pool).await.expect("analyze");
    sqlx::query(
        "INSERT INTO jobs (kind, app_id, status) SELECT 'restart', id, 'queued' FROM apps ORDER BY id",
    )
    .execute(&pool)
    .await
    .expect("burst");
    let (scans_before, read_before) = index_counts(&pool, "jobs_queued_idx").await;
    let (probes_before, _) = index_counts(&pool, "jobs_unfinished_app_idx").await;

    let mut conn = pool.acquire().await.expect("connection");
    // Six times: the statement's generic plan (from the sixth run on) must be as good as the
    // first ones.
    let mut claimed = Vec::new();
    for _ in 0..6 {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("tx");
        claimed = jobs::lock_ready(&mut tx, 20, &[here]).await.expect("claim");
        tx.rollback().await.expect("rollback");
    }
    assert_eq!(claimed.len(), 20, "the claim finds this control plane's jobs behind the others'");
    assert!(claimed.iter().all(|j| j.goes == jobs::Goes::ToAppWorker(here)), "{claimed:?}");
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut *conn).await.expect("flush");
    sqlx::query("SELECT 1").execute(&mut *conn).await.expect("report");
    drop(conn);

    let flushed = eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        index_counts(&pool, "jobs_queued_idx").await.0 > scans_before
    })
    .await;
    assert!(flushed, "the claims' index counters never reached pg_stat_user_indexes");
    let (_, read) = index_counts(&pool, "jobs_queued_idx").await;
    let (probes, _) = index_counts(&pool, "jobs_unfinished_app_idx").await;
    // Six claims over 1,020 queued entries each (windows of 80, each read twice: its bounds,
    // then its jobs): about 12,000. Probing `jobs_queued_idx` for each job judged read 3.1
    // million (seen with the probe by `status = 'queued'`, which that index also answers).
    let entries = read - read_before;
    assert!(entries < 20_000, "the claims read {entries} entries of jobs_queued_idx");
    assert!(
        probes - probes_before >= 6 * 1020,
        "the siblings were not probed by app: {} probes",
        probes - probes_before
    );
    pool.close().await;
}
