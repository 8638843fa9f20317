//! Benchmark: how much the node preset's caches save. A node app with a real dependency
//! (`express`, from the npm registry) is deployed from nothing, then again unchanged, again
//! after a source change, and again after a dependency change; a second app with the same
//! changed files builds beside it from an empty cache of its own (its control). Each figure
//! is the deployment's start-to-running time (clone, build, run, health check, switch), the
//! median over a few apps. Prints figures; asserts nothing about speed.
//!
//! Run with `bash scripts/bench.sh build-cache` (needs the local preset images and the npm
//! registry; builds run off the confined build network, see below).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_testkit::worker::spawn_worker_with_settings;
use wisehosting_testkit::{
    LOCAL_PRESET_IMAGES, TestRepo, UserSession, create_worker, percentile, spawn_control_plane_with,
};

const APPS: usize = 3;
const LIMIT: Duration = Duration::from_secs(600);

fn package_json(extra_dependency: bool) -> String {
    let mut dependencies = json!({"express": "4.21.2"});
    if extra_dependency {
        dependencies["ms"] = json!("2.1.3");
    }
    json!({"name": "bench", "version": "1.0.0", "private": true,
           "scripts": {"start": "node server.js"}, "dependencies": dependencies})
    .to_string()
}

const SERVER: &str = "const express = require('express');\nconst app = express();\napp.get('/', (req, res) => res.send('hello'));\napp.listen(process.env.PORT || 8080);\n";

/// Seconds from the deployment's start to running.
async fn seconds(user: &UserSession, id: i64) -> f64 {
    let d: Value = user.wait_deployment(id, LIMIT).await;
    assert_eq!(d["status"], "running", "{d}");
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(d[k].as_str().expect(k)).expect("time");
    (at("finished_at") - at("started_at")).num_milliseconds() as f64 / 1000.0
}

async fn create(user: &UserSession, name: &str, repo: &TestRepo) -> (i64, i64) {
    let created: Value = user
        .post_json("/api/deploy", &json!({"name": name, "repo_url": repo.url(), "framework": "node"}))
        .await
        .json()
        .await
        .expect("json");
    (created["app"]["id"].as_i64().expect("app"), created["deployment"]["id"].as_i64().expect("deployment"))
}

#[tokio::main]
async fn main() {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        // Two apps per round: more than the free plan's five.
        c.plans = vec![wisehosting_control_plane::plans::PlanConfig {
            name: "free".into(),
            apps: Some(20),
            ..Default::default()
        }];
    })
    .await;
    let w = create_worker(&cp, "bench-cache").await;
    // Builds off the confined build network: this machine reaches the npm registry only
    // through a proxy at a documentation address (203.0.113.0/24), which the build firewall
    // refuses as it refuses every reserved range. The caches are what is measured here.
    let settings = format!("{LOCAL_PRESET_IMAGES}  isolate_builds: false\n");
    let agent = spawn_worker_with_settings(&cp, &w, &cp.base_url, &settings);
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    let user = cp.login("bench@example.com").await;
    let (mut cold, mut unchanged, mut source, mut deps, mut control) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..APPS {
        eprintln!("app {}/{APPS}…", i + 1);
        let repo = TestRepo::new();
        repo.commit(&[("package.json", &package_json(false)), ("server.js", SERVER)], "v1");
        let (app, first) = create(&user, &format!("bench-{i}"), &repo).await;
        cold.push(seconds(&user, first).await);
        unchanged.push(seconds(&user, user.redeploy(app).await).await);
        repo.commit(&[("README.md", "a source change\n")], "v2");
        source.push(seconds(&user, user.redeploy(app).await).await);
        repo.commit(&[("package.json", &package_json(true))], "v3");
        deps.push(seconds(&user, user.redeploy(app).await).await);
        // The control: the same files as v3, another app, an empty cache.
        let twin = TestRepo::new();
        twin.commit(
            &[
                ("package.json", &package_json(true)),
                ("server.js", SERVER),
                ("README.md", "a source change\n"),
            ],
            "twin",
        );
        let (_, twin_first) = create(&user, &format!("twin-{i}"), &twin).await;
        control.push(seconds(&user, twin_first).await);
        let last = |v: &[f64]| v.last().copied().unwrap_or_default();
        eprintln!(
            "  first {:.2} s, unchanged {:.2} s, source change {:.2} s, dependency added {:.2} s, its twin {:.2} s",
            last(&cold),
            last(&unchanged),
            last(&source),
            last(&deps),
            last(&control)
        );
    }
    agent.stop().await;
    let median = |v: &mut Vec<f64>| percentile(v, 0.5);
    println!("node preset, express app, start-to-running, median of {APPS} apps (seconds):");
    println!("{:>52} {:>8.2}", "first build (no layers, no npm cache)", median(&mut cold));
    println!("{:>52} {:>8.2}", "second build, unchanged", median(&mut unchanged));
    println!("{:>52} {:>8.2}", "a source change (dependencies' layer kept)", median(&mut source));
    println!("{:>52} {:>8.2}", "a dependency added (npm install, warm cache)", median(&mut deps));
    println!("{:>52} {:>8.2}", "the same files, another app (empty cache)", median(&mut control));
}
