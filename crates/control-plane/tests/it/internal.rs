//! The internal API through the whole platform (SPEC §10, §14.4; T16, T25): the console's
//! figures across tenants, and podman queries through the hub to a real worker.

use std::time::{Duration, Instant};

use serde_json::Value;
use wisehosting_crypto::Secret;
use wisehosting_testkit::{TestControlPlane, TestRepo, eventually, page_containerfile, spawn_platform};

const TOKEN: &str = "internal-api-token-0123456789abcdef0123";
const LIMIT: Duration = Duration::from_secs(120);

async fn internal(cp: &TestControlPlane, path: &str) -> (u16, Value) {
    let addr = cp.internal_addr.expect("the internal API listens");
    let r = cp.client.get(format!("http://{addr}{path}")).bearer_auth(TOKEN).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_figures_across_tenants_and_runs_only_the_five_podman_queries_on_a_real_worker() {
    let (cp, agent, user) = spawn_platform("console", "tenant@example.com", |c| {
        c.internal_api.token = Secret::new(TOKEN);
    })
    .await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("console"))], "v1");
    let (app, deployment) = user.deploy("Consoled", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, LIMIT).await["status"], "running");
    let worker = agent.worker.id;

    // Every endpoint needs the token.
    let addr = cp.internal_addr.expect("listens");
    for path in [
        "/internal-api/dashboard-stats".to_string(),
        "/internal-api/dashboard-extras".to_string(),
        "/internal-api/dashboard-deployments-timeseries".to_string(),
        "/internal-api/workers/live".to_string(),
        format!("/internal-api/apps/{app}/live-stats"),
        format!("/internal-api/apps/{app}/logs/tail"),
        "/internal-api/apps/recent-logs".to_string(),
        format!("/internal-api/workers/{worker}/podman/ps"),
    ] {
        let r = cp.client.get(format!("http://{addr}{path}")).send().await.expect("request");
        assert_eq!(r.status(), 401, "{path} without a token");
        let r =
            cp.client.get(format!("http://{addr}{path}")).bearer_auth("wrong").send().await.expect("request");
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }

    let (status, stats) = internal(&cp, "/internal-api/dashboard-stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!((stats["apps_total"].as_i64(), stats["apps_online"].as_i64()), (Some(1), Some(1)), "{stats}");
    assert_eq!((stats["deployments_today"].as_i64(), stats["errors_today"].as_i64()), (Some(1), Some(0)));
    assert_eq!(stats["deltas"]["apps_total"], 0.0, "nothing a day ago: 0, not infinity");

    let (_, extras) = internal(&cp, "/internal-api/dashboard-extras").await;
    assert_eq!(extras["recent_deployments"][0]["id"], deployment, "{extras}");
    assert_eq!(extras["recent_deployments"][0]["user_email"], "tenant@example.com");
    assert_eq!(extras["nodes"][0]["worker_id"], worker);
    assert_eq!(extras["nodes"][0]["apps"], 1);
    assert_eq!(extras["system"]["workers_online"], 1);
    assert_eq!(extras["system"]["platform_certificate"], Value::Null, "none configured");
    assert!(
        extras["activity"].as_array().is_some_and(|a| a.iter().any(|r| r["action"] == "app.deployed")),
        "{extras}"
    );

    let (_, series) = internal(&cp, "/internal-api/dashboard-deployments-timeseries").await;
    let buckets = series.as_array().expect("buckets");
    assert_eq!(buckets.len(), 24, "hourly buckets for a day");
    assert_eq!(buckets.iter().map(|b| b["success"].as_i64().unwrap_or(0)).sum::<i64>(), 1, "{series}");
    assert_eq!(internal(&cp, "/internal-api/dashboard-deployments-timeseries?hours=500").await.0, 422);

    let (_, live) = internal(&cp, "/internal-api/workers/live").await;
    assert_eq!(live[0]["worker_id"], worker);
    assert_eq!((live[0]["connected"].as_bool(), live[0]["name"].as_str()), (Some(true), Some("console")));

    let stats_live = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        internal(&cp, &format!("/internal-api/apps/{app}/live-stats")).await.1["live"] == true
    })
    .await;
    assert!(stats_live, "the app's live figures");
    assert_eq!(internal(&cp, "/internal-api/apps/999999/live-stats").await.0, 404);
    let (_, tail) = internal(&cp, &format!("/internal-api/apps/{app}/logs/tail?tail=5")).await;
    let lines = tail["lines"].as_array().expect("lines");
    assert!(!lines.is_empty() && lines.len() <= 5, "{tail}");
    let (_, recent) = internal(&cp, "/internal-api/apps/recent-logs?limit=3").await;
    assert_eq!(recent["lines"].as_array().map(Vec::len), Some(3), "{recent}");

    // The five queries reach podman on the worker; anything else is refused here.
    let (status, ps) = internal(&cp, &format!("/internal-api/workers/{worker}/podman/ps")).await;
    assert_eq!(status, 200, "{ps}");
    assert_eq!(ps["command"], "ps");
    assert!(
        ps["output"].as_str().unwrap_or("").contains(&agent.instance),
        "the app's container is listed: {ps}"
    );
    let canary = tempfile::tempdir().expect("dir").keep().join("canary");
    let touch = format!("$(touch {})", canary.display());
    for cmd in ["rm", "ps;rm", "exec", "ps -a", "; id", "$(whoami)", "-a", "--help", touch.as_str()] {
        let escaped =
            url::form_urlencoded::byte_serialize(cmd.as_bytes()).collect::<String>().replace('+', "%20");
        let (status, body) = internal(&cp, &format!("/internal-api/workers/{worker}/podman/{escaped}")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("unknown_command")), "{cmd}: {body}");
    }
    assert!(!canary.exists(), "no shell ran anything");

    // An offline worker: 503 at once, not after a timeout.
    agent.stop().await;
    let gone = eventually(Duration::from_secs(10), Duration::from_millis(100), || async {
        internal(&cp, "/internal-api/workers/live").await.1[0]["connected"] == false
    })
    .await;
    assert!(gone);
    let started = Instant::now();
    let (status, body) = internal(&cp, &format!("/internal-api/workers/{worker}/podman/ps")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("worker_offline")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_api_takes_only_its_exact_token_and_only_on_loopback() {
    use std::net::{Ipv4Addr, SocketAddr};
    use wisehosting_testkit::netns::Namespace;

    let cp =
        wisehosting_testkit::spawn_control_plane_with(|c| c.internal_api.token = Secret::new(TOKEN)).await;
    let addr = cp.internal_addr.expect("the internal API listens");
    assert!(addr.ip().is_loopback(), "{addr}");
    let url = format!("http://{addr}/internal-api/dashboard-stats");
    let mut one_byte_off = TOKEN.as_bytes().to_vec();
    *one_byte_off.last_mut().expect("a byte") ^= 1;
    let one_byte_off = String::from_utf8(one_byte_off).expect("ascii");
    let refused: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("an empty bearer", Some("Bearer ".into())),
        ("a prefix", Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]))),
        ("one wrong byte", Some(format!("Bearer {one_byte_off}"))),
        ("one byte more", Some(format!("Bearer {TOKEN}x"))),
        ("another scheme", Some(format!("Basic {TOKEN}"))),
        ("the token without a scheme", Some(TOKEN.into())),
    ];
    for (case, header) in refused {
        let mut request = cp.client.get(&url);
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let r = request.send().await.expect("request");
        assert_eq!(r.status(), 401, "{case}");
    }
    let r = cp.client.get(&url).bearer_auth(TOKEN).send().await.expect("request");
    assert_eq!(r.status(), 200, "the exact token");

    // Another network namespace, joined to this host by a veth pair, reaches a listener on
    // every address of the host (the control) but not the internal API on the host's side of
    // the pair, nor on its own loopback.
    let [a, b] = wisehosting_crypto::random_bytes::<2>();
    let inside = Ipv4Addr::new(192, 89, a % 200, (b & 0x3f) * 4 + 2);
    let namespace = Namespace::create(&[inside]);
    let host = Namespace::host_side(inside);
    let control = tokio::net::TcpListener::bind("0.0.0.0:0").await.expect("control listener");
    let control_port = control.local_addr().expect("addr").port();
    let ns = &namespace;
    let reached = tokio::task::block_in_place(|| ns.connect(SocketAddr::from((host, control_port))));
    assert!(reached.is_ok(), "the namespace reaches the host's listeners: {reached:?}");
    for target in [SocketAddr::from((host, addr.port())), SocketAddr::from(([127, 0, 0, 1], addr.port()))] {
        let tried = tokio::task::block_in_place(|| ns.connect(target));
        assert!(tried.is_err(), "the internal API answered {target} from another namespace");
    }
    drop(control);
}
