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
