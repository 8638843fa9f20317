//! The alert manager through the whole platform: rules by the API, metric rules evaluated in
//! rounds at injected times (a compressed clock, not sleeps) over figures recorded where the
//! hub records a worker's reports, event kinds raised and cleared by what really happens (a
//! worker going offline and coming back, an app crash-looping and a fixed redeploy).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wisehosting_control_plane::observe::alerts::Evaluator;
use wisehosting_control_plane::observe::notify::Channels;
use wisehosting_proto::messages::{AppStat, AppStats, ContainerCounters};
use wisehosting_testkit::{
    TestRepo, UserSession, eventually, page_containerfile, spawn_platform, spawn_worker,
};

const LIMIT: Duration = Duration::from_secs(120);

async fn alerts(user: &UserSession, status: &str) -> Vec<Value> {
    let r = user.get(&format!("/api/alerts?status={status}")).await;
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.expect("json")
}

fn kinds(alerts: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = alerts.iter().map(|a| a["kind"].as_str().unwrap_or("").to_string()).collect();
    k.sort();
    k
}

/// A report as a worker sends it, with cumulative counters that grow by `net_per_report`.
fn report(app: i64, cpu: f64, mem: u64, net_total: u64, restarts: u32) -> AppStats {
    AppStats {
        epoch: 1,
        apps: vec![AppStat {
            app_id: app,
            cpu_pct: cpu,
            memory_bytes: mem,
            mem_limit_bytes: 1000,
            restarts,
            containers: vec![ContainerCounters {
                id: "c1".into(),
                net_rx_bytes: net_total,
                ..ContainerCounters::default()
            }],
            ..AppStat::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_kind_fires_and_resolves_once_and_survives_a_restart_of_its_evaluator() {
    let (cp, agent, user) = spawn_platform("alerts", "alerts@example.com", |c| {
        // The background rounds stay out of the way of the injected clock.
        c.alerts.evaluate_every_secs = 3600;
    })
    .await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("alerts"))], "v1");
    let (app, deployment) = user.deploy("Alerted", &repo.url()).await;
    let done = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    let rules: Vec<Value> =
        user.get(&format!("/api/apps/{app}/alert-rules")).await.json().await.expect("json");
    assert_eq!(
        kinds(&rules),
        ["certificate_failing", "crashloop", "deployment_failed", "offline"],
        "a new app's default rules"
    );

    // Offline: the worker stops; the app's offline alert fires, once.
    let worker = agent.worker.clone();
    agent.stop().await;
    let fired = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        kinds(&alerts(&user, "firing").await) == ["offline"]
    })
    .await;
    assert!(fired, "offline fires: {:?}", alerts(&user, "firing").await);
    let offline = &alerts(&user, "firing").await[0];
    assert_eq!(offline["app_id"], app);
    assert!(
        offline["message"].as_str().unwrap_or("").contains("Alerted: its worker alerts is offline"),
        "{offline}"
    );

    // Metric rules, with a worker's reports recorded as the hub records them.
    for (kind, threshold) in [("cpu", 80.0), ("memory", 50.0), ("network", 1000.0), ("restarts", 3.0)] {
        let r = user
            .post_json(
                &format!("/api/apps/{app}/alert-rules"),
                &json!({"kind": kind, "threshold": threshold, "sustain_minutes": 5}),
            )
            .await;
        assert_eq!(r.status(), 201, "{kind}: {}", r.text().await.unwrap_or_default());
    }
    let stats = cp.hub.stats().clone();
    let evaluator = |db: sqlx::PgPool| Evaluator { db, stats: stats.clone(), channels: Channels::default() };
    let t0: DateTime<Utc> = Utc::now();
    let at = |minutes: i64| t0 + chrono::Duration::minutes(minutes);
    let mut net = 0;
    let mut over = |restarts: u32| {
        net += 50_000;
        cp.hub.stats().record(worker.id, report(app, 95.0, 900, net, restarts));
    };
    over(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    over(10);
    let first = evaluator(cp.db.clone()).round(at(0)).await.expect("round");
    assert_eq!((first.fired, first.moved), (0, 4), "over, but not for 5 minutes yet");
    evaluator(cp.db.clone()).round(at(4)).await.expect("round");
    assert_eq!(kinds(&alerts(&user, "firing").await), ["offline"]);
    // A new evaluator (a restarted control plane) carries on from the state in the database.
    over(10);
    let fired = evaluator(cp.db.clone()).round(at(5)).await.expect("round");
    assert_eq!(fired.fired, 4, "{fired:?}");
    assert_eq!(kinds(&alerts(&user, "firing").await), ["cpu", "memory", "network", "offline", "restarts"]);
    let again = evaluator(cp.db.clone()).round(at(6)).await.expect("round");
    assert_eq!(again.fired, 0, "one alert per kind, no flood");
    let firing = alerts(&user, "firing").await;
    let cpu = firing.iter().find(|a| a["kind"] == "cpu").expect("cpu alert");
    assert_eq!(cpu["message"], "Alerted: CPU at 95.0% for 5 minutes (over 80%)");

    // Acknowledged alerts stay open; under the thresholds for 5 minutes, all resolve. The
    // restart count is over an hour, so it clears once that hour has passed.
    let ack = user.post_json(&format!("/api/alerts/{}/acknowledge", cpu["id"]), &json!({})).await;
    assert_eq!(ack.status(), 200);
    assert_eq!(kinds(&alerts(&user, "acknowledged").await), ["cpu"]);
    cp.hub.stats().record(worker.id, report(app, 5.0, 100, net, 10));
    tokio::time::sleep(Duration::from_millis(50)).await;
    cp.hub.stats().record(worker.id, report(app, 5.0, 100, net, 10));
    evaluator(cp.db.clone()).round(at(70)).await.expect("round");
    let still = evaluator(cp.db.clone()).round(at(74)).await.expect("round");
    assert_eq!(still.resolved, 0, "under for 4 minutes only");
    let resolved = evaluator(cp.db.clone()).round(at(75)).await.expect("round");
    assert_eq!(resolved.resolved, 4, "{resolved:?}");
    assert_eq!(kinds(&alerts(&user, "firing").await), ["offline"]);
    assert!(alerts(&user, "acknowledged").await.is_empty());
    let done = alerts(&user, "resolved").await;
    assert_eq!(kinds(&done), ["cpu", "memory", "network", "restarts"]);
    assert!(done.iter().all(|a| a["resolved_at"].is_string()));

    // The worker comes back: offline resolves.
    let back = spawn_worker(&cp, &worker, &cp.base_url);
    let cleared = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        alerts(&user, "firing").await.is_empty()
    })
    .await;
    assert!(cleared, "offline resolves: {:?}", alerts(&user, "firing").await);

    // Rules are the app owner's only; a bad rule says what is wrong.
    let other = cp.login("alerts-other@example.com").await;
    assert_eq!(other.get(&format!("/api/apps/{app}/alert-rules")).await.status(), 404);
    assert_eq!(
        other.post_json(&format!("/api/alerts/{}/resolve", cpu["id"]), &json!({})).await.status(),
        404
    );
    let bad = user
        .post_json(&format!("/api/apps/{app}/alert-rules"), &json!({"kind": "memory", "threshold": 150}))
        .await;
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or("").contains("between 1 and 100"), "{body}");
    let resolved_again = user.post_json(&format!("/api/alerts/{}/acknowledge", cpu["id"]), &json!({})).await;
    assert_eq!(resolved_again.status(), 409, "a resolved alert is not acknowledged");
    back.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_app_raises_crashloop_and_a_fixed_deploy_clears_it() {
    let (_cp, agent, user) = spawn_platform("crashes", "crashes@example.com", |_| {}).await;
    let repo = TestRepo::new();
    // Serves long enough to pass its health check, then exits, again and again.
    let crashing = "FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www && echo up > /www/index.html\nCMD [\"sh\", \"-c\", \"httpd -p 8080 -h /www; sleep 3; exit 3\"]\n";
    repo.commit(&[("Containerfile", crashing)], "crashes");
    let (app, deployment) = user.deploy("Crashy", &repo.url()).await;
    let done = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    let fired = eventually(Duration::from_secs(60), Duration::from_millis(300), || async {
        kinds(&alerts(&user, "firing").await) == ["crashloop"]
    })
    .await;
    assert!(fired, "crashloop fires: {:?}", alerts(&user, "firing").await);
    let alert = &alerts(&user, "firing").await[0];
    assert!(alert["message"].as_str().unwrap_or("").contains("keep exiting"), "{alert}");
    assert!(alert["message"].as_str().unwrap_or("").contains("exit code 3"), "{alert}");

    repo.commit(&[("Containerfile", &page_containerfile("fixed"))], "fixed");
    let fixed = user.redeploy(app).await;
    let done = user.wait_deployment(fixed, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    let cleared = eventually(Duration::from_secs(30), Duration::from_millis(300), || async {
        alerts(&user, "firing").await.is_empty() && kinds(&alerts(&user, "resolved").await) == ["crashloop"]
    })
    .await;
    assert!(cleared, "crashloop resolves: {:?}", alerts(&user, "").await);
    agent.stop().await;
}
