//! What users see of their running apps, through the whole platform: a real worker's
//! reports of a real container reach `GET /api/apps/:id/stats` and its history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use wisehosting_testkit::{TestRepo, page_containerfile, spawn_platform};

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_app_shows_its_live_figures_and_their_history_to_its_owner_only() {
    let (cp, agent, user) = spawn_platform("stats", "stats@example.com", |_| {}).await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("stats"))], "v1");
    let (app, deployment) = user.deploy("Stats App", &repo.url()).await;
    let done = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");

    // Traffic through the edge router while we look.
    let edge = agent.status.edge_addr().expect("the edge router listens");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let stop = stop.clone();
        async move {
            let client = reqwest::Client::builder().no_proxy().build().expect("client");
            while !stop.load(Ordering::Relaxed) {
                let _ =
                    client.get(format!("http://{edge}/")).header("host", "stats-app.localhost").send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut last = Value::Null;
    let mut seen = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = user.get(&format!("/api/apps/{app}/stats")).await.json().await.unwrap_or_default();
        seen = last["live"] == true && last["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0;
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic");
    assert!(seen, "live figures with a request rate: {last}");
    assert_eq!(last["mem_limit_bytes"], 256 * 1024 * 1024, "the free plan's limit: {last}");
    assert!(last["mem_bytes"].as_u64().unwrap_or(0) > 0, "{last}");
    assert_eq!(last["restarts"], 0);
    assert!(last["sampled_at"].is_string(), "{last}");

    let history: Value =
        user.get(&format!("/api/apps/{app}/stats/history")).await.json().await.expect("json");
    assert_eq!(history["step_secs"], 10);
    let points = history["points"].as_array().expect("points");
    assert!(!points.is_empty(), "{history}");
    assert!(points[0]["mem_bytes"].as_u64().unwrap_or(0) > 0, "{history}");

    // Someone else's app is not found, with either route.
    let other = cp.login("stats-other@example.com").await;
    for path in [format!("/api/apps/{app}/stats"), format!("/api/apps/{app}/stats/history")] {
        let r = other.get(&path).await;
        assert_eq!(r.status(), 404, "{path}");
    }
}

/// `n` requests to the app through the edge router, each answered 200.
async fn requests(agent: &wisehosting_testkit::SpawnedWorker, host: &str, n: usize) {
    let edge = agent.status.edge_addr().expect("the edge router listens");
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    for _ in 0..n {
        let r = client.get(format!("http://{edge}/")).header("host", host).send().await.expect("request");
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_each_sample_and_each_request_once_across_a_worker_reconnect() {
    use wisehosting_control_plane::observe::usage::Recorder;
    use wisehosting_testkit::{CutProxy, create_worker, spawn_control_plane_with, spawn_worker};
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        // Samples are taken by the test, at the interval's figures.
        c.usage.sample_interval_secs = 3600;
    })
    .await;
    let proxy = CutProxy::start(cp.addr).await;
    let w = create_worker(&cp, "usage").await;
    let agent = spawn_worker(&cp, &w, &proxy.url());
    assert!(agent.wait_for(Duration::from_secs(15), |s| s.connected.load(Ordering::Relaxed)).await);
    let user = cp.login("usage@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("usage"))], "v1");
    let (app, deployment) = user.deploy("Metered", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, LIMIT).await["status"], "running");
    let recorder =
        Recorder { db: cp.db.clone(), stats: cp.hub.stats().clone(), interval: Duration::from_secs(60) };
    let reported = |n: u64| {
        let stats = cp.hub.stats().clone();
        async move {
            wisehosting_testkit::eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
                stats.latest(app, w.id).is_some_and(|l| l.stat.requests == n && l.is_live())
            })
            .await
        }
    };

    requests(&agent, "metered.localhost", 25).await;
    assert!(reported(25).await, "the worker reports 25 requests");
    // Interval slots 1 and 2 (the recorder numbers them from the clock; here they are given).
    assert_eq!(recorder.sample_slot(chrono::Utc::now(), 1).await.expect("sample"), 1);
    assert_eq!(recorder.sample_slot(chrono::Utc::now(), 2).await.expect("sample"), 1);
    // A second control plane (or this one restarted) taking slot 2 again counts nothing.
    let other =
        Recorder { db: cp.db.clone(), stats: cp.hub.stats().clone(), interval: Duration::from_secs(60) };
    assert_eq!(other.sample_slot(chrono::Utc::now(), 2).await.expect("sample"), 0);

    // The link drops and comes back; the agent (and its counters) carry on.
    let first = agent.status.connection_id();
    proxy.cut();
    requests(&agent, "metered.localhost", 15).await;
    proxy.restore();
    assert!(
        agent
            .wait_for(Duration::from_secs(20), |s| s.connected.load(Ordering::Relaxed)
                && s.connection_id() != first)
            .await,
        "the worker reconnects"
    );
    assert!(reported(40).await, "the worker reports 40 requests after its reconnect");
    assert_eq!(recorder.sample_slot(chrono::Utc::now(), 3).await.expect("sample"), 1);

    let usage: Value = user.get("/api/usage").await.json().await.expect("json");
    let days = &usage["apps"][0]["days"];
    assert_eq!(usage["apps"][0]["app_id"], app);
    assert_eq!(days.as_array().map(Vec::len), Some(1), "{usage}");
    let today = &days[0];
    assert_eq!(today["date"], chrono::Utc::now().date_naive().to_string());
    assert_eq!(today["requests"], 40, "every request once: {today}");
    let hours = today["container_hours"].as_f64().unwrap_or(0.0);
    assert!((hours - 3.0 * 60.0 / 3600.0).abs() < 1e-12, "3 samples × 60 s: {today}");
    assert!(today["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{today}");
    assert!(today["net_rx_bytes"].as_i64().unwrap_or(0) > 0, "{today}");
    assert!(today["mem_gb_hours"].as_f64().unwrap_or(0.0) > 0.0, "{today}");

    let me: Value = user.get("/api/me").await.json().await.expect("json");
    assert_eq!(me["usage"]["month"]["requests"], 40, "{me}");
    assert_eq!(
        (me["usage"]["apps"]["used"].as_i64(), me["usage"]["apps"]["limit"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(me["usage"]["deploys_last_24h"]["used"], 1);

    let bad = user.get("/api/usage?from=2026-13-01").await;
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or("").contains("is not a date"), "{body}");
    assert_eq!(user.get("/api/usage?from=2026-11-28&to=2026-11-01").await.status(), 422);
    agent.stop().await;
}
