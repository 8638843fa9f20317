//! Benchmark: N simulated workers, each a real signed WebSocket connection sending a
//! heartbeat every 5 s, against one control plane process. Prints the control plane's RSS,
//! CPU % of one core and memory per connection at N = 1,000, 5,000 and 10,000 (or the
//! levels given in `WH_BENCH_LEVELS`, comma-separated). Then the largest level again, split
//! over two control plane processes on the same database (a pair behind a load balancer),
//! with each one's figures and a check that every worker stays online — neither marks the
//! other's workers offline (`WH_BENCH_PAIR=0` skips it).
//!
//! Run with `bash scripts/bench.sh hub` (it starts a throwaway PostgreSQL).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use wisehosting_control_plane::store::workers::mac_key_aad;
use wisehosting_crypto::{Keyring, Purpose, Sealer, Secret, random_token, sha256_hex};
use wisehosting_proto::messages::{Heartbeat, Hello};
use wisehosting_proto::{LinkKeys, Receiver, Sender, mac_key_from_api_key};
use wisehosting_testkit::worker::now_ms;

const SECRET: &str = "bench-master-secret-0123456789abcdef0123456789";
const JOIN_SECRET: &str = "bench-join-secret-0123456789abcdef0123456789";
const HEARTBEAT: Duration = Duration::from_secs(5);

fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // Root may raise the hard limit too; otherwise take what the hard limit allows.
    let wanted = hard.max(65_536);
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return wanted;
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}

/// RSS in bytes and CPU jiffies (user + system) of a process.
fn proc_usage(pid: u32) -> (u64, u64) {
    let rss_kib = wisehosting_testkit::proc_status_kib(pid, "VmRSS:");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    (rss_kib * 1024, utime + stime)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map_or(100.0, |v| v as f64)
}

async fn create_workers(db: &sqlx::PgPool, n: usize) -> Vec<(i64, String)> {
    let keys = Keyring::from_master(&Secret::new(SECRET));
    let sealer = Sealer::new(1, [(1, keys.key(Purpose::ColumnEncryption).clone())]).expect("sealer");
    let raw: Vec<String> = (0..n).map(|_| random_token("whk_")).collect();
    let names: Vec<String> = (0..n).map(|i| format!("bench-{i}")).collect();
    let hashes: Vec<String> = raw.iter().map(|k| sha256_hex(k.as_bytes())).collect();
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO workers (name, api_key_hash, mac_key_sealed) SELECT n, h, '' FROM unnest($1::text[], $2::text[]) AS u(n, h) RETURNING id",
    )
    .bind(&names)
    .bind(&hashes)
    .fetch_all(db)
    .await
    .expect("insert workers");
    let sealed: Vec<String> = ids
        .iter()
        .zip(&raw)
        .map(|(id, key)| sealer.seal(&mac_key_from_api_key(key), mac_key_aad(&id.to_string())).expect("seal"))
        .collect();
    sqlx::query("UPDATE workers w SET mac_key_sealed = u.s FROM unnest($1::bigint[], $2::text[]) AS u(id, s) WHERE w.id = u.id")
        .bind(&ids)
        .bind(&sealed)
        .execute(db)
        .await
        .expect("seal keys");
    ids.into_iter().zip(raw).collect()
}

/// One simulated worker: register, connect, hello, then a heartbeat every 5 s until the end.
async fn simulated_worker(
    base: String,
    name: String,
    api_key: String,
    connected: Arc<AtomicU64>,
    permits: Arc<Semaphore>,
) {
    let permit = permits.acquire_owned().await.expect("permit");
    let body = serde_json::json!({"secret": JOIN_SECRET, "api_key": api_key, "name": name, "version": "bench",
        "zone": null, "capacity": {"cpus": 1, "memory_mb": 512}, "wg_public_key": null});
    let token: serde_json::Value = {
        // A client per registration, dropped at once, so its pooled socket does not linger.
        let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().expect("client");
        loop {
            match http.post(format!("{base}/v1/workers/register")).json(&body).send().await {
                Ok(r) if r.status() == 200 => break r.json().await.expect("json"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    let ws_url = format!("{}/v1/workers/ws", base.replacen("http://", "ws://", 1));
    let mut request = ws_url.into_client_request().expect("request");
    let bearer = format!("Bearer {}", token["token"].as_str().expect("token"));
    request.headers_mut().insert("authorization", HeaderValue::from_str(&bearer).expect("header"));
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("connect");
    drop(permit);
    let connection_id =
        response.headers().get("x-wh-connection").and_then(|v| v.to_str().ok()).expect("id").to_string();
    let keys = LinkKeys::derive(&mac_key_from_api_key(&api_key), &connection_id);
    let mut sender = Sender::new(keys.c2s);
    let mut receiver = Receiver::new(keys.s2c);
    let (mut sink, mut stream) = ws.split();
    let Some(Ok(Message::Text(welcome))) = stream.next().await else { panic!("no welcome") };
    receiver.accept(welcome.as_str(), now_ms()).expect("welcome verifies");
    let hello = sender.seal(&Hello { version: "bench".into(), ..Hello::default() }, rand::random(), now_ms());
    sink.send(Message::Text(hello.into())).await.expect("hello");
    connected.fetch_add(1, Ordering::Relaxed);
    // Spread heartbeats over the interval like a real fleet.
    let offset = Duration::from_millis(rand::thread_rng().gen_range(0..HEARTBEAT.as_millis() as u64));
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let hb = Heartbeat { cpu_pct: 12.5, load1: 0.4, mem_used_bytes: 1 << 30, mem_total_bytes: 4 << 30, uptime_secs: 1000, ..Heartbeat::default() };
                let frame = sender.seal(&hb, rand::random(), now_ms());
                if sink.send(Message::Text(frame.into())).await.is_err() { return; }
            }
            incoming = stream.next() => if incoming.is_none() { return },
        }
    }
}

#[tokio::main]
async fn main() {
    let fd_limit = raise_fd_limit();
    let levels: Vec<usize> = std::env::var("WH_BENCH_LEVELS")
        .unwrap_or_else(|_| "1000,5000,10000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let max = levels.iter().copied().max().unwrap_or(0);
    assert!((max as u64) + 1000 < fd_limit, "the fd limit {fd_limit} is too low for {max} connections");
    let url = wisehosting_testkit::fresh_database(true).await;
    let db = sqlx::PgPool::connect(&url).await.expect("db");
    let workers = create_workers(&db, max).await;

    let (mut cp, base, _config) = start_control_plane(&url).await;
    let (baseline_rss, _) = proc_usage(cp.id());
    println!("control plane pid {} on {base}; baseline RSS {:.1} MB", cp.id(), baseline_rss as f64 / 1e6);
    println!(
        "{:>8} {:>10} {:>14} {:>12} {:>10}",
        "workers", "RSS MB", "RSS/conn KB", "CPU % core", "setup s"
    );

    let connected = Arc::new(AtomicU64::new(0));
    let permits = Arc::new(Semaphore::new(64));
    let mut started = 0usize;
    let mut rows = Vec::new();
    for level in levels {
        let t0 = Instant::now();
        for (_, (id, key)) in workers.iter().enumerate().skip(started).take(level - started) {
            let name = format!("bench-{}", id - workers[0].0);
            tokio::spawn(simulated_worker(
                base.clone(),
                name,
                key.clone(),
                connected.clone(),
                permits.clone(),
            ));
        }
        started = level;
        while connected.load(Ordering::Relaxed) < level as u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(t0.elapsed() < Duration::from_secs(600), "connections did not come up");
        }
        let setup = t0.elapsed().as_secs_f64();
        // Settle, then measure over four heartbeat intervals.
        tokio::time::sleep(HEARTBEAT * 2).await;
        let (_, cpu0) = proc_usage(cp.id());
        let window = HEARTBEAT * 4;
        tokio::time::sleep(window).await;
        let (rss, cpu1) = proc_usage(cp.id());
        let cpu_pct = (cpu1 - cpu0) as f64 / ticks_per_second() / window.as_secs_f64() * 100.0;
        let per_conn_kb = rss.saturating_sub(baseline_rss) as f64 / level as f64 / 1024.0;
        println!("{level:>8} {:>10.1} {per_conn_kb:>14.1} {cpu_pct:>12.1} {setup:>10.1}", rss as f64 / 1e6);
        rows.push((level, rss, cpu_pct));
    }
    stop(&mut cp);
    if let Some((n, rss, cpu)) = rows.last() {
        println!(
            "goal at {n}: <= 100 MB and <= 15 % of one core -> {:.1} MB, {cpu:.1} % ({})",
            *rss as f64 / 1e6,
            if *rss <= 100_000_000 && *cpu <= 15.0 { "met" } else { "not met" }
        );
    }
    if std::env::var("WH_BENCH_PAIR").as_deref() != Ok("0") && max > 0 {
        pair(&url, &db, &workers).await;
    }
}

fn stop(cp: &mut std::process::Child) {
    let _ =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(cp.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = cp.wait();
}

/// `wisehosting serve` on a free port over `url`, once it answers `/ready`; its config file
/// lives as long as the returned handle.
async fn start_control_plane(url: &str) -> (std::process::Child, String, tempfile::NamedTempFile) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut config = tempfile::NamedTempFile::new().expect("config");
    write!(
        config,
        "api_server:\n  host: 127.0.0.1\n  port: {port}\n  secret: {SECRET}\nworkers:\n  join_secret: {JOIN_SECRET}\ndatabase:\n  url: \"{url}\"\n  max_connections: 10\n  min_connections: 1\nheartbeat_interval_secs: 5\nworker_auth_per_minute: 100000000\nlog:\n  level: warn\n"
    )
    .expect("write config");
    // `WH_BENCH_CP_WRAPPER=heaptrack` runs the control plane under a profiler (its figures are
    // then the wrapper's).
    let mut command = match std::env::var("WH_BENCH_CP_WRAPPER") {
        Ok(wrapper) if !wrapper.is_empty() => {
            let mut c = Command::new(wrapper);
            c.arg(env!("CARGO_BIN_EXE_wisehosting"));
            c
        }
        _ => Command::new(env!("CARGO_BIN_EXE_wisehosting")),
    };
    let cp = command
        .arg("serve")
        .env("CONFIG_PATH", config.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the control plane");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    for _ in 0..200 {
        if http.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    (cp, base, config)
}

/// Every worker again, half on each of two control planes over the same database.
async fn pair(url: &str, db: &sqlx::PgPool, workers: &[(i64, String)]) {
    let n = workers.len();
    let (mut one, base_one, _c1) = start_control_plane(url).await;
    let (mut two, base_two, _c2) = start_control_plane(url).await;
    let baseline = [proc_usage(one.id()).0, proc_usage(two.id()).0];
    let connected = Arc::new(AtomicU64::new(0));
    let permits = Arc::new(Semaphore::new(64));
    let t0 = Instant::now();
    for (i, (id, key)) in workers.iter().enumerate() {
        let base = if i % 2 == 0 { &base_one } else { &base_two };
        let name = format!("bench-{}", id - workers[0].0);
        tokio::spawn(simulated_worker(base.clone(), name, key.clone(), connected.clone(), permits.clone()));
    }
    while connected.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(t0.elapsed() < Duration::from_secs(600), "connections did not come up");
    }
    let setup = t0.elapsed().as_secs_f64();
    tokio::time::sleep(HEARTBEAT * 2).await;
    let cpu0 = [proc_usage(one.id()).1, proc_usage(two.id()).1];
    let window = HEARTBEAT * 4;
    tokio::time::sleep(window).await;
    let after = [proc_usage(one.id()), proc_usage(two.id())];
    println!("\n{n} workers over two control planes on one database (setup {setup:.1} s):");
    println!("{:>14} {:>10} {:>14} {:>12}", "control plane", "RSS MB", "RSS/conn KB", "CPU % core");
    for (i, (rss, cpu1)) in after.iter().enumerate() {
        let cpu = (cpu1 - cpu0[i]) as f64 / ticks_per_second() / window.as_secs_f64() * 100.0;
        let per_conn = rss.saturating_sub(baseline[i]) as f64 / (n / 2) as f64 / 1024.0;
        println!("{:>14} {:>10.1} {per_conn:>14.1} {cpu:>12.1}", i + 1, *rss as f64 / 1e6);
    }
    // Both flushed their workers' heartbeats and neither swept the other's.
    let held: Vec<(Option<String>, String, i64)> = sqlx::query_as(
        "SELECT connected_to, status, count(*) FROM workers GROUP BY connected_to, status ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await
    .expect("held");
    for (holder, status, count) in &held {
        println!("  held by {:<20} {status:<8} {count}", holder.as_deref().unwrap_or("-"));
    }
    let online: i64 = held.iter().filter(|(_, s, _)| s == "online").map(|(_, _, c)| c).sum();
    println!(
        "online after the window: {online} of {n} ({})",
        if online == n as i64 { "every worker" } else { "NOT every worker" }
    );
    stop(&mut one);
    stop(&mut two);
}
