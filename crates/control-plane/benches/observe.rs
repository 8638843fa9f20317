//! Benchmark of what watches running apps, in this process against a throwaway PostgreSQL:
//!
//! 1. Alert evaluation for 10,000 apps with 4 metric rules each (`WH_BENCH_APPS` to change):
//!    the pure decision over all rules (CPU time per round), a whole round with the database
//!    when every rule's state moves, and a steady round (1 % of apps cross a threshold); the
//!    memory the rules and the live figures take.
//! 2. The webhook dispatcher to a local receiver: 10,000 signed deliveries over 200 endpoints
//!    (`WH_BENCH_DELIVERIES`), deliveries per second until all are delivered.
//!
//! Run with `bash scripts/bench.sh observe`. Prints figures; asserts nothing about speed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wisehosting_control_plane::observe::alerts::{Evaluator, decide, value_of};
use wisehosting_control_plane::observe::notify::Channels;
use wisehosting_control_plane::observe::stats::StatsBook;
use wisehosting_control_plane::observe::webhooks::Dispatcher;
use wisehosting_control_plane::outbound::Guard;
use wisehosting_control_plane::store;
use wisehosting_crypto::{Keyring, Purpose, Sealer, Secret};
use wisehosting_proto::messages::{AppStat, AppStats, ContainerCounters};

fn rss_bytes() -> u64 {
    wisehosting_testkit::proc_status_kib(std::process::id(), "VmRSS:") * 1024
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map_or(100.0, |v| v as f64)
}

fn mib(b: u64) -> f64 {
    b as f64 / 1024.0 / 1024.0
}

async fn seed_apps(db: &PgPool, apps: i64) -> i64 {
    let worker: i64 = sqlx::query_scalar(
        "INSERT INTO workers (name, api_key_hash, mac_key_sealed, status) VALUES ('bench', repeat('a', 64), 'x', 'online') RETURNING id",
    )
    .fetch_one(db)
    .await
    .expect("worker");
    sqlx::query(
        "INSERT INTO users (email) SELECT 'u' || g || '@bench.test' FROM generate_series(1, $1 / 10 + 1) g",
    )
    .bind(apps)
    .execute(db)
    .await
    .expect("users");
    sqlx::query(
        "INSERT INTO apps (user_id, slug, name, status, repo_url, worker_id)
         SELECT (SELECT min(id) FROM users) + (g % ($1 / 10 + 1)), 'app-' || g, 'App ' || g, 'running',
                'https://example.com/r.git', $2
         FROM generate_series(1, $1) g",
    )
    .bind(apps)
    .bind(worker)
    .execute(db)
    .await
    .expect("apps");
    sqlx::query(
        "INSERT INTO alert_rules (app_id, kind, threshold, sustain_minutes)
         SELECT a.id, k.kind, k.t, 5 FROM apps a
         CROSS JOIN (VALUES ('cpu', 80.0), ('memory', 90.0), ('network', 1e6), ('restarts', 5.0)) AS k(kind, t)",
    )
    .execute(db)
    .await
    .expect("rules");
    worker
}

fn fill_book(book: &StatsBook, worker: i64, app_ids: &[i64], hot: impl Fn(i64) -> bool) {
    for chunk in app_ids.chunks(1000) {
        let apps = chunk
            .iter()
            .map(|&id| AppStat {
                app_id: id,
                cpu_pct: if hot(id) { 95.0 } else { 10.0 },
                memory_bytes: 100 << 20,
                mem_limit_bytes: 256 << 20,
                containers: vec![ContainerCounters { id: format!("c{id}"), ..ContainerCounters::default() }],
                ..AppStat::default()
            })
            .collect();
        book.record(worker, AppStats { apps, epoch: 1 });
    }
}

async fn alerts(db: &PgPool, apps: i64) {
    let worker = seed_apps(db, apps).await;
    let app_ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM apps ORDER BY id").fetch_all(db).await.expect("ids");
    let before = rss_bytes();
    let stats = Arc::new(StatsBook::default());
    fill_book(&stats, worker, &app_ids, |_| true);
    let book_bytes = rss_bytes().saturating_sub(before);
    let evaluator = Evaluator { db: db.clone(), stats: stats.clone(), channels: Channels::default() };
    let before = rss_bytes();
    let rules = store::alerts::metric_rules(db).await.expect("rules");
    let rules_bytes = rss_bytes().saturating_sub(before);
    let now = Utc::now();
    // The decision alone, over every rule.
    let rounds = 20;
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    for _ in 0..rounds {
        let (moved, _) = decide(&rules, |r| value_of(&stats, r, now), now);
        assert!(!moved.is_empty());
    }
    let decide_ms = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
    let decide_cpu_ms = (cpu_secs() - cpu0) * 1000.0 / f64::from(rounds);
    // Whole rounds with the database: every state moves (all over), then they fire.
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let first = evaluator.round(now).await.expect("round");
    let first_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let first_cpu = (cpu_secs() - cpu0) * 1000.0;
    let t0 = Instant::now();
    let fired = evaluator.round(now + chrono::Duration::minutes(5)).await.expect("round");
    let fired_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Steady: 1 % of apps move.
    fill_book(&stats, worker, &app_ids, |id| id % 100 != 0);
    let mut steady = Vec::new();
    let mut steady_cpu = Vec::new();
    for i in 0..10 {
        let (cpu0, t0) = (cpu_secs(), Instant::now());
        evaluator.round(now + chrono::Duration::minutes(6 + i)).await.expect("round");
        steady.push(t0.elapsed().as_secs_f64() * 1000.0);
        steady_cpu.push((cpu_secs() - cpu0) * 1000.0);
    }
    steady.sort_by(f64::total_cmp);
    steady_cpu.sort_by(f64::total_cmp);
    println!("alert evaluation, {apps} apps × 4 rules = {} rules:", rules.len());
    println!(
        "  decision only: {decide_ms:.1} ms per round ({decide_cpu_ms:.1} ms CPU; goal ≤ 50 ms of one core)"
    );
    println!(
        "  round with the database, every state moving: {first_ms:.0} ms ({first_cpu:.0} ms CPU in this process), {} moved",
        first.moved
    );
    println!("  round that fires {} alerts: {fired_ms:.0} ms", fired.fired);
    println!(
        "  steady round (1 % of apps crossing): median {:.0} ms ({:.1} ms CPU in this process)",
        steady[steady.len() / 2],
        steady_cpu[steady_cpu.len() / 2]
    );
    println!(
        "  memory: live figures {:.1} MiB ({:.0} bytes per app), rules loaded for a round {:.1} MiB",
        mib(book_bytes),
        book_bytes as f64 / apps as f64,
        mib(rules_bytes)
    );
}

async fn webhooks(db: &PgPool, endpoints: i64, deliveries: i64) {
    let receiver = wisehosting_testkit::WebhookReceiver::start().await;
    let keys = Keyring::from_master(&Secret::new("bench-master-secret-0123456789abcdef"));
    let sealer =
        Arc::new(Sealer::new(1, [(1, keys.key(Purpose::ColumnEncryption).clone())]).expect("sealer"));
    let user: i64 = sqlx::query_scalar("INSERT INTO users (email) VALUES ('hooks@bench.test') RETURNING id")
        .fetch_one(db)
        .await
        .expect("user");
    let events = vec!["deployment.succeeded".to_string()];
    for _ in 0..endpoints {
        let mut tx = db.begin().await.expect("tx");
        store::webhooks::create_endpoint(&mut tx, &sealer, user, &receiver.url("/"), &events, "whsec_bench")
            .await
            .expect("endpoint");
        tx.commit().await.expect("commit");
    }
    let per = deliveries / endpoints;
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event, data)
         SELECT e.id, 'deployment.succeeded', jsonb_build_object('deployment', jsonb_build_object('id', g))
         FROM webhook_endpoints e CROSS JOIN generate_series(1, $1) g",
    )
    .bind(per)
    .execute(db)
    .await
    .expect("deliveries");
    let total = per * endpoints;
    let dispatcher = Dispatcher {
        db: db.clone(),
        sealer,
        guard: Guard::new(None, true, Duration::from_secs(10)).expect("guard"),
        channels: Channels::default(),
        disable_after: 40,
        retry_scale: 1.0,
        poll: Duration::from_millis(20),
    };
    let stop = CancellationToken::new();
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let sends = dispatcher.spawn(stop.clone());
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
                .fetch_one(db)
                .await
                .expect("count");
        if done >= total {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "{done} of {total} after 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    stop.cancel();
    wisehosting_control_plane::observe::webhooks::drain(sends).await;
    let received = receiver.received();
    assert_eq!(received.len() as i64, total, "each delivered once");
    assert!(received.iter().all(|r| r.signed_with("whsec_bench")));
    println!(
        "webhook dispatcher: {total} signed deliveries over {endpoints} endpoints in {secs:.1} s = {:.0} deliveries/s (goal ≥ 1,000); {:.0} % of one core in this process (receiver included)",
        total as f64 / secs,
        cpu / secs * 100.0
    );
}

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let apps = env_or("WH_BENCH_APPS", 10_000);
    let deliveries = env_or("WH_BENCH_DELIVERIES", 10_000);
    let url = wisehosting_testkit::fresh_database(true).await;
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(25).connect(&url).await.expect("connect");
    alerts(&db, apps).await;
    let url = wisehosting_testkit::fresh_database(true).await;
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(25).connect(&url).await.expect("connect");
    webhooks(&db, 200, deliveries).await;
}
