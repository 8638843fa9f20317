//! Benchmark: deploy-to-first-200 for a cached build of a small app, p50 and p95 over 20
//! deploys, next to the same steps done by hand with raw `podman build` + `podman run` + first
//! request in the same run. Prints figures; asserts nothing.
//!
//! Run with `bash scripts/bench.sh deploy`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wisehosting_testkit::worker::containers_conf;
use wisehosting_testkit::{
    TestRepo, create_worker, page_containerfile, percentile, spawn_control_plane_with, spawn_worker,
};

const ROUNDS: usize = 20;

async fn first_200(client: &reqwest::Client, port: i64) {
    let url = format!("http://127.0.0.1:{port}/");
    for _ in 0..2000 {
        if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no 200 from {url}");
}

fn podman(args: &[&str]) -> String {
    let out = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(args)
        .output()
        .expect("podman");
    assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::main]
async fn main() {
    // `RUST_LOG=info` shows where a deploy's time goes (the worker's phases, with timestamps).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    // Short timeouts: a first SYN sent before the port mapping exists is retried at once
    // instead of waiting for the kernel's 1 s retransmission.
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(50))
        .timeout(Duration::from_millis(500))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("bench"))], "bench");

    eprintln!("raw podman steps, {ROUNDS} rounds…");
    // The raw steps, by hand.
    let tag = format!("localhost/wh-bench-raw-{}:latest", std::process::id());
    let mut raw = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let ctx = repo.dir.path().to_str().expect("path");
        podman(&["build", "-q", "-t", &tag, ctx]);
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let id = podman(&["run", "-d", "-p", &format!("127.0.0.1:{port}:8080"), &tag]);
        first_200(&client, i64::from(port)).await;
        raw.push(started.elapsed());
        podman(&["rm", "-f", "-t", "0", &id]);
    }
    podman(&["rmi", "-f", &tag]);

    eprintln!("platform deploys, {ROUNDS} rounds…");
    // The platform: POST a redeploy, wait for `running`, then the first 200.
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
    })
    .await;
    let w = create_worker(&cp, "bench").await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
            .await
    );
    let user = cp.login("bench@example.com").await;
    let created: Value = user
        .post_json("/api/deploy", &json!({"name": "bench", "repo_url": repo.url(), "port": 8080}))
        .await
        .json()
        .await
        .expect("json");
    let app_id = created["app"]["id"].as_i64().expect("id");
    let first = created["deployment"]["id"].as_i64().expect("id");
    assert_eq!(user.wait_deployment(first, Duration::from_secs(120)).await["status"], "running");
    let mut platform = Vec::new();
    for round in 0..ROUNDS {
        // Like the raw loop, which removes its container between rounds untimed: the previous
        // deploy's retire and prune (old container drained and stopped, old images pruned)
        // finish before the next deploy starts, so rounds do not contend for podman's locks.
        let housekeeping = &agent.status.housekeeping_done;
        let settled = agent
            .wait_for(Duration::from_secs(60), |s| {
                s.housekeeping_done.load(std::sync::atomic::Ordering::Relaxed) > round as u64
            })
            .await;
        assert!(settled, "the previous deploy's retire finished ({housekeeping:?})");
        let started = Instant::now();
        let id = user.redeploy(app_id).await;
        let posted = started.elapsed();
        loop {
            let d: Value = user.get(&format!("/api/deployments/{id}")).await.json().await.expect("json");
            match d["status"].as_str() {
                Some("running") => break,
                Some("failed" | "cancelled" | "superseded") => panic!("deploy ended {d}"),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        let a: Value = user.get(&format!("/api/apps/{app_id}")).await.json().await.expect("json");
        let running = started.elapsed();
        first_200(&client, a["host_port"].as_i64().expect("port")).await;
        platform.push(started.elapsed());
        tracing::info!(?posted, ?running, total = ?started.elapsed(), "round");
    }
    agent.stop().await;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (raw50, raw95) = (percentile(&mut raw, 0.5), percentile(&mut raw, 0.95));
    let (p50, p95) = (percentile(&mut platform, 0.5), percentile(&mut platform, 0.95));
    println!("deploy-to-first-200 over {ROUNDS} deploys of a cached build (release build):");
    println!("{:>28} {:>10} {:>10}", "", "p50 ms", "p95 ms");
    println!("{:>28} {:>10.0} {:>10.0}", "raw podman build+run+GET", ms(raw50), ms(raw95));
    println!("{:>28} {:>10.0} {:>10.0}", "WiseHosting redeploy", ms(p50), ms(p95));
    println!(
        "overhead at p50: {:.0} ms (goal: p50 <= 2000 ms and <= 150 ms over raw) -> {}",
        ms(p50) - ms(raw50),
        if ms(p50) <= 2000.0 && ms(p50) - ms(raw50) <= 150.0 { "met" } else { "not met" }
    );
}
