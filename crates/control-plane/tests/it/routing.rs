//! Routing through the whole platform: the Traefik config endpoints, and the worker's edge
//! router serving `<slug>.localhost` from real containers, through stops and redeploys.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wisehosting_testkit::{
    SpawnedWorker, TestControlPlane, TestRepo, UserSession, create_worker, eventually, page_containerfile,
    spawn_control_plane_with, spawn_platform, spawn_worker,
};

const LIMIT: Duration = Duration::from_secs(120);

async fn platform(
    worker: &str,
    proxy_token: &str,
) -> (TestControlPlane, SpawnedWorker, UserSession, TestRepo) {
    let token = proxy_token.to_string();
    let (cp, agent, user) = spawn_platform(worker, &format!("{worker}@example.com"), move |c| {
        c.proxy.token = wisehosting_crypto::Secret::new(token);
    })
    .await;
    (cp, agent, user, TestRepo::new())
}

/// GET `/` on the edge router with `host`: (status, body); a connection error as status 0.
async fn via_edge(client: &reqwest::Client, agent: &SpawnedWorker, host: &str) -> (u16, String) {
    let edge = agent.status.edge_addr().expect("the edge router listens");
    match client.get(format!("http://{edge}/")).header("host", host).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

async fn deploy(user: &UserSession, repo: &TestRepo, name: &str) -> (i64, i64) {
    let (app, deployment) = user.deploy(name, &repo.url()).await;
    let done = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    (app, deployment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_router_serves_each_app_at_its_hostname_and_says_why_when_it_cannot() {
    let (cp, agent, user, repo) = platform("router", "proxy-token-0123456789").await;
    repo.commit(&[("Containerfile", &page_containerfile("routed v1"))], "v1");
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");

    let started = Instant::now();
    let (app, _) = deploy(&user, &repo, "Routed App").await;
    let running_at = started.elapsed();
    // Propagation: from `running` to the first answer through the edge router.
    let mut served_at = None;
    for _ in 0..400 {
        if via_edge(&client, &agent, "routed-app.localhost").await == (200, "routed v1\n".into()) {
            served_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let served_at = served_at.expect("the edge router serves the app at <slug>.localhost");
    println!(
        "route propagation: running after {running_at:?}, served by the edge router {:?} later",
        served_at.saturating_sub(running_at)
    );
    let (status, body) = via_edge(&client, &agent, "nobody-here.localhost").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No app on this platform answers to this hostname"));

    // The worker's own table: only with its JWT and only its own id; ETag answers 304.
    let worker_id: i64 = sqlx::query_scalar("SELECT id FROM workers WHERE name = 'router'")
        .fetch_one(&cp.db)
        .await
        .expect("worker");
    let token = agent.status.token().expect("the agent holds a token");
    let url = cp.url(&format!("/v1/traefik/config?worker_id={worker_id}"));
    let first = client.get(&url).bearer_auth(token.expose()).send().await.expect("config");
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    let config: Value = first.json().await.expect("json");
    let router = &config["http"]["routers"][format!("app-{app}")];
    assert_eq!(router["rule"], "Host(`routed-app.localhost`)");
    let again = client
        .get(&url)
        .bearer_auth(token.expose())
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("config");
    assert_eq!(again.status(), 304);
    let other = client
        .get(cp.url(&format!("/v1/traefik/config?worker_id={}", worker_id + 1)))
        .bearer_auth(token.expose())
        .send()
        .await
        .expect("config");
    assert_eq!(other.status(), 403, "a worker reads only its own routes");
    assert_eq!(client.get(&url).send().await.expect("config").status(), 401);

    // The proxy's table: Bearer proxy.token; only workers with a mesh address.
    let proxy_url = cp.url("/v1/traefik/proxy-config");
    for bad in ["", "proxy-token-012345678", "proxy-token-0123456789x"] {
        let r = client.get(&proxy_url).bearer_auth(bad).send().await.expect("proxy config");
        assert_eq!(r.status(), 401, "{bad:?}");
    }
    let proxy_table = || async {
        let r = client.get(&proxy_url).bearer_auth("proxy-token-0123456789").send().await.expect("proxy");
        r.json::<Value>().await.expect("json")
    };
    // Single-machine mode: the control plane gave the worker 127.0.0.1 as its mesh address
    // when it registered, so a proxy on this machine reaches the app there.
    assert_eq!(agent.status.wg_ip(), Some(std::net::IpAddr::from([127, 0, 0, 1])));
    let mesh = proxy_table().await;
    let a: Value = user.get(&format!("/api/apps/{app}")).await.json().await.expect("app");
    assert_eq!(
        mesh["http"]["services"][format!("app-{app}")]["loadBalancer"]["servers"][0]["url"],
        format!("http://127.0.0.1:{}", a["host_port"]),
        "{mesh}"
    );

    // Stopped: the router says the app is not running (503), not that it does not exist.
    assert_eq!(user.post_json(&format!("/api/apps/{app}/stop"), &json!({})).await.status(), 202);
    let unavailable = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        via_edge(&client, &agent, "routed-app.localhost").await.0 == 503
    })
    .await;
    assert!(unavailable, "a stopped app answers 503");
    assert!(via_edge(&client, &agent, "routed-app.localhost").await.1.contains("not running right now"));
    // A user's stop is not a crash: the worker's supervisor does not start it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let states: Vec<Value> = agent.containers_of(app).iter().map(|c| c["State"].clone()).collect();
    assert!(!states.is_empty() && states.iter().all(|s| s != "running"), "{states:?}");
    assert_eq!(via_edge(&client, &agent, "routed-app.localhost").await.0, 503);
    let metrics_addr = agent.status.metrics_addr().expect("metrics listen");
    let metrics = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!("wisehosting_edge_requests_total{{app=\"app-{app}\",class=\"2xx\"}}")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_redeploys_under_steady_traffic_drop_no_request() {
    let (_cp, agent, user, repo) = platform("steady", "").await;
    repo.commit(&[("Containerfile", &page_containerfile("version 0"))], "v0");
    let (app, _) = deploy(&user, &repo, "steady").await;
    let edge = agent.status.edge_addr().expect("edge");
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    let ready = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        via_edge(&client, &agent, "steady.localhost").await.0 == 200
    })
    .await;
    assert!(ready, "routed before the redeploys");

    // Two clients: one keeps its connection alive, one opens a new connection per request.
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failures) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::<String>::new())));
    let mut loops = Vec::new();
    for keep_alive in [true, false] {
        let (running, ok, failures) = (running.clone(), ok.clone(), failures.clone());
        loops.push(tokio::spawn(async move {
            let mut builder = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10));
            if !keep_alive {
                builder = builder.pool_max_idle_per_host(0);
            }
            let client = builder.build().expect("client");
            while running.load(Ordering::Relaxed) {
                let outcome =
                    client.get(format!("http://{edge}/")).header("host", "steady.localhost").send().await;
                match outcome {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await.unwrap_or_default();
                        if body.starts_with("version ") {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.lock().expect("lock").push(format!("unexpected body {body:?}"));
                        }
                    }
                    Ok(r) => failures.lock().expect("lock").push(format!("status {}", r.status())),
                    Err(e) => failures.lock().expect("lock").push(format!("error {e}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for round in 1..=10 {
        repo.commit(
            &[("Containerfile", &page_containerfile(&format!("version {round}")))],
            &format!("v{round}"),
        );
        let id = user.redeploy(app).await;
        let done = user.wait_deployment(id, LIMIT).await;
        assert_eq!(done["status"], "running", "round {round}: {done}");
        let expected = format!("version {round}\n");
        let switched = eventually(Duration::from_secs(10), Duration::from_millis(10), || async {
            via_edge(&client, &agent, "steady.localhost").await.1 == expected
        })
        .await;
        assert!(switched, "round {round}: the new version is served");
    }
    // Let the last old container drain and stop under traffic too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);
    for l in loops {
        l.await.expect("client loop");
    }
    let failures = failures.lock().expect("lock").clone();
    println!("zero-downtime: {} requests answered during 10 redeploys", ok.load(Ordering::Relaxed));
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "traffic actually flowed");
    // Old containers stop after their drain (and podman's 5 s SIGTERM grace): one is left.
    let one_left = eventually(Duration::from_secs(30), Duration::from_millis(200), || async {
        agent.containers_of(app).len() == 1
    })
    .await;
    assert!(one_left, "one container left: {:?}", agent.containers_of(app).len());
}

/// Real Traefik, its HTTP provider pointed at the proxy config: the compatibility contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_traefik_routes_to_the_app_from_the_proxy_config() {
    let traefik = std::env::var("WH_TRAEFIK_BIN").expect(
        "WH_TRAEFIK_BIN names the Traefik binary; scripts/test.sh sets it (scripts/traefik.sh fetches it)",
    );
    let token = "traefik-proxy-token-0123456789";
    let dns = wisehosting_testkit::TestDns::start().await;
    let resolver = dns.addr.to_string();
    let cp = spawn_control_plane_with(move |c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        c.proxy.token = wisehosting_crypto::Secret::new(token.to_string());
        c.domains.dns_resolver = resolver;
        c.domains.allow_wildcards = true;
    })
    .await;
    // Single-machine mode: the worker's mesh address is 127.0.0.1, given when it registers, so
    // a Traefik in front of the platform on this machine routes to its apps (SPEC §14.5).
    let w = create_worker(&cp, "traefik").await;
    let agent = spawn_worker(&cp, &w, &cp.base_url);
    assert!(agent.wait_for(Duration::from_secs(15), |s| s.connected.load(Ordering::Relaxed)).await);
    assert_eq!(agent.status.wg_ip(), Some(std::net::IpAddr::from([127, 0, 0, 1])));
    let user = cp.login("traefik@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("through traefik"))], "v1");
    let (app, _) = deploy(&user, &repo, "via-traefik").await;
    // A verified wildcard domain: its HostRegexp rule must be one real Traefik accepts.
    let added = user
        .post_json(&format!("/api/apps/{app}/domains"), &json!({"hostname": "*.shops.example.org"}))
        .await;
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await.expect("json");
    dns.set_txt(
        "_wisehosting-challenge.shops.example.org",
        &[added["verification"]["value"].as_str().expect("token")],
    );
    let verified =
        user.post_json(&format!("/api/apps/{app}/domains/*.shops.example.org/verify"), &json!({})).await;
    assert_eq!(verified.status(), 200);

    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let static_config = format!(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\nproviders:\n  http:\n    endpoint: \"{}\"\n    pollInterval: \"1s\"\n    headers:\n      Authorization: \"Bearer {token}\"\nlog:\n  level: ERROR\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n",
        cp.url("/v1/traefik/proxy-config")
    );
    let file = dir.path().join("traefik.yml");
    std::fs::write(&file, static_config).expect("write");
    let log = std::fs::File::create(dir.path().join("traefik.log")).expect("log");
    let mut child = std::process::Command::new(traefik)
        .arg(format!("--configFile={}", file.display()))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start traefik");
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    // Traefik serves the app's page for `host`, within `limit` (it polls the config each second).
    let serves = |host: &'static str, limit: u64| {
        let client = client.clone();
        async move {
            eventually(Duration::from_secs(limit), Duration::from_millis(200), || async {
                match client.get(format!("http://127.0.0.1:{port}/")).header("host", host).send().await {
                    Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default() == "through traefik\n",
                    _ => false,
                }
            })
            .await
        }
    };
    let served = serves("via-traefik.localhost", 30).await;
    let wildcard = serves("berlin.shops.example.org", 10).await;
    let two_labels =
        client.get(format!("http://127.0.0.1:{port}/")).header("host", "a.b.shops.example.org").send().await;
    let unknown =
        client.get(format!("http://127.0.0.1:{port}/")).header("host", "other.localhost").send().await;
    // The edge router reads the same rule the same way.
    let edge = agent.status.edge_addr().expect("edge");
    let via_edge =
        client.get(format!("http://{edge}/")).header("host", "berlin.shops.example.org").send().await;
    let _ = child.kill();
    let _ = child.wait();
    let traefik_log = std::fs::read_to_string(dir.path().join("traefik.log")).unwrap_or_default();
    assert!(served, "Traefik served the app from the proxy config; its log:\n{traefik_log}");
    assert!(wildcard, "Traefik served the wildcard domain; its log:\n{traefik_log}");
    assert_eq!(two_labels.expect("traefik answers").status(), 404, "a wildcard covers one label");
    assert_eq!(unknown.expect("traefik answers").status(), 404);
    assert_eq!(via_edge.expect("edge answers").status(), 200);
}
