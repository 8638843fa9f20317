//! Certificates for verified custom domains (SPEC §14.7, issue 18 item 1) from a real ACME
//! server, Debian's `pebble`: the control plane orders one, the worker's edge router answers
//! the HTTP-01 challenge it is pushed, and the domain shows the certificate, whose chain leads
//! to pebble's root; the certificate is pushed to that worker, whose edge router serves the
//! domain over HTTPS with it (and redirects plain requests there); a name whose challenge
//! nothing answers fails with pebble's reason and is tried again.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_testkit::challtestsrv::ChallTestSrv;
use wisehosting_testkit::cloudflare::FakeCloudflare;
use wisehosting_testkit::pebble::Pebble;
use wisehosting_testkit::worker::SpawnedWorker;
use wisehosting_testkit::worker::spawn_worker_with_edge;
use wisehosting_testkit::{
    TestControlPlane, TestDns, TestRepo, UserSession, create_worker, eventually, page_containerfile,
    spawn_control_plane_with,
};

async fn domain(user: &UserSession, app: i64, hostname: &str) -> Value {
    user.get(&format!("/api/apps/{app}/domains/{hostname}")).await.json().await.expect("json")
}

/// Adds `hostname` to `app` and verifies it with its TXT record.
async fn verified(user: &UserSession, dns: &TestDns, app: i64, hostname: &str) {
    let added: Value = user
        .post_json(&format!("/api/apps/{app}/domains"), &json!({"hostname": hostname}))
        .await
        .json()
        .await
        .expect("json");
    let token = added["verification"]["value"].as_str().unwrap_or_else(|| panic!("{added}")).to_string();
    dns.set_txt(&format!("_wisehosting-challenge.{hostname}"), &[&token]);
    let r = user.post_json(&format!("/api/apps/{app}/domains/{hostname}/verify"), &json!({})).await;
    assert_eq!(r.status(), 200, "{hostname} verifies");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["certificate"],
        json!({"status": "pending", "not_after": null, "error": null}),
        "a verified domain's certificate is pending at once (SPEC §14.7)"
    );
}

fn openssl_verify(dir: &std::path::Path, root: &str, intermediate: &str, chain: &str) -> (bool, String) {
    let leaf_end =
        chain.find("-----END CERTIFICATE-----").expect("a certificate") + "-----END CERTIFICATE-----".len();
    std::fs::write(dir.join("root.pem"), root).expect("root");
    std::fs::write(dir.join("leaf.pem"), &chain[..leaf_end]).expect("leaf");
    let rest = format!("{}\n{intermediate}", &chain[leaf_end..]);
    std::fs::write(dir.join("untrusted.pem"), rest).expect("untrusted");
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", "root.pem", "-untrusted", "untrusted.pem", "leaf.pem"])
        .current_dir(dir)
        .output()
        .expect("openssl");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// `GET https://<host>/` on the worker's HTTPS listener, trusting only pebble's root (the
/// intermediate comes from the chain served): the status, the body and the served leaf's
/// not-after; `Err` while the listener is not open or the handshake fails.
async fn over_https(root: &str, agent: &SpawnedWorker, host: &str) -> Result<(u16, String, String), String> {
    let at = agent.status.https_addr().ok_or("the HTTPS listener is not open")?;
    let client = wisehosting_testkit::tls::client_trusting_pem(root)
        .resolve(host, at)
        .tls_info(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let response =
        client.get(format!("https://{host}:{}/", at.port())).send().await.map_err(|e| format!("{e:?}"))?;
    let leaf = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or("no peer certificate")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| e.to_string())?;
    let not_after = parsed.validity().not_after.to_datetime().unix_timestamp().to_string();
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default(), not_after))
}

/// Pebble issuing certificates valid for `validity_secs` (its default when `None`), a control
/// plane ordering from it every second, a worker whose edge router pebble validates against,
/// and a running app: (dns, pebble, control plane, worker, user, app id).
async fn acme_platform(
    validity_secs: Option<u64>,
) -> (TestDns, Pebble, TestControlPlane, SpawnedWorker, UserSession, i64) {
    let dns = TestDns::start().await;
    let edge = free_addr();
    let pebble = Pebble::start_issuing_for(edge.port(), dns.addr, validity_secs).await;
    let resolver = dns.addr.to_string();
    let (cp, agent, user, app) =
        platform_with(&pebble, edge, move |c| c.domains.dns_resolver = resolver).await;
    (dns, pebble, cp, agent, user, app)
}

/// A port for the edge router, chosen first: pebble validates HTTP-01 on it.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port")
}

/// ACME from `pebble`, a round every second, a failed order tried again after 2 s.
fn acme_settings(pebble: &Pebble) -> wisehosting_control_plane::config::acme::AcmeConfig {
    wisehosting_control_plane::config::acme::AcmeConfig {
        directory_url: pebble.directory_url.clone(),
        ca_file: Some(pebble.ca_file.clone()),
        email: "ops@example.com".into(),
        check_interval_secs: 1,
        retry_base_secs: 2,
        ..Default::default()
    }
}

/// A control plane ordering from `pebble` every second (configured further by `configure`), a
/// worker whose edge router listens on `edge`, and a running app: (control plane, worker,
/// user, app id).
async fn platform_with(
    pebble: &Pebble,
    edge: SocketAddr,
    configure: impl FnOnce(&mut wisehosting_control_plane::config::Config) + Send + 'static,
) -> (TestControlPlane, SpawnedWorker, UserSession, i64) {
    let acme = acme_settings(pebble);
    let cp = spawn_control_plane_with(move |c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        c.acme = acme;
        // Two domains on one app: more than the free plan's one.
        c.plans = vec![wisehosting_control_plane::plans::PlanConfig {
            name: "free".into(),
            custom_domains: Some(5),
            ..Default::default()
        }];
        configure(c);
    })
    .await;
    let w = create_worker(&cp, "acme").await;
    let agent = spawn_worker_with_edge(&cp, &w, &cp.base_url, edge);
    let online = agent
        .wait_for(Duration::from_secs(20), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
        .await;
    assert!(online, "the worker connects");
    let user = cp.login("owner@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("shop"))], "v1");
    let (app, deployment) = user.deploy("Shop", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, Duration::from_secs(120)).await["status"], "running");
    (cp, agent, user, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_domain_gets_a_certificate_from_the_acme_server_and_a_failed_challenge_says_why() {
    let (dns, pebble, cp, agent, user, app) = acme_platform(None).await;
    // The name resolves to the edge router: pebble's validation reaches the pushed answer.
    dns.set_addrs("shop.example.com", &[&["127.0.0.1".parse().expect("ip")]]);
    // This one resolves where nothing listens on the port: the challenge cannot be answered.
    dns.set_addrs("broken.example.com", &[&["127.0.0.2".parse().expect("ip")]]);
    verified(&user, &dns, app, "shop.example.com").await;
    verified(&user, &dns, app, "broken.example.com").await;

    let issued = eventually(Duration::from_secs(90), Duration::from_millis(500), || async {
        domain(&user, app, "shop.example.com").await["certificate"]["status"] == "issued"
    })
    .await;
    let shop = domain(&user, app, "shop.example.com").await;
    assert!(issued, "{shop}");
    let not_after =
        chrono::DateTime::parse_from_rfc3339(shop["certificate"]["not_after"].as_str().expect("not_after"))
            .expect("RFC 3339");
    assert!(not_after > chrono::Utc::now() + chrono::Duration::days(1), "{shop}");
    assert_eq!(shop["certificate"]["error"], Value::Null);
    let id: i64 = sqlx::query_scalar("SELECT id FROM domains WHERE hostname = 'shop.example.com'")
        .fetch_one(&cp.db)
        .await
        .expect("domain id");
    let chain = wisehosting_control_plane::store::certificates::chain(&cp.db, id)
        .await
        .expect("chain")
        .expect("a chain");
    let dir = tempfile::tempdir().expect("dir");
    let (ok, said) =
        openssl_verify(dir.path(), &pebble.root_pem().await, &pebble.intermediate_pem().await, &chain);
    assert!(ok, "the chain leads to pebble's root: {said}");
    let key: Option<String> =
        sqlx::query_scalar("SELECT key_sealed FROM domain_certificates WHERE domain_id = $1")
            .bind(id)
            .fetch_one(&cp.db)
            .await
            .expect("key");
    assert!(
        key.as_deref().is_some_and(|k| k.starts_with("whs1.") && !k.contains("PRIVATE KEY")),
        "the key is sealed"
    );

    // Pushed to the app's worker, whose edge router opens HTTPS and serves the domain with it.
    let root = pebble.root_pem().await;
    let served = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        over_https(&root, &agent, "shop.example.com").await.is_ok()
    })
    .await;
    let answer = over_https(&root, &agent, "shop.example.com").await;
    assert!(served, "served over HTTPS with a chain to pebble's root: {answer:?}");
    let (status, body, _) = answer.expect("answer");
    assert_eq!(status, 200);
    assert!(body.contains("shop"), "the app's page: {body}");
    // Plain HTTP for the domain goes to HTTPS; the platform's own hostname has no certificate.
    let edge = agent.status.edge_addr().expect("edge");
    let https_port = agent.status.https_addr().expect("https").port();
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let redirected = plain
        .get(format!("http://{edge}/cart?id=1"))
        .header("host", "shop.example.com")
        .send()
        .await
        .expect("plain request");
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("https://shop.example.com:{https_port}/cart?id=1").as_str()
    );
    assert!(
        over_https(&root, &agent, "broken.example.com").await.is_err(),
        "no certificate for a domain whose order failed"
    );
    // The app turns the redirect off and HSTS on: the edge router applies both at once.
    let settings = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app}/https"))
        .json(&json!({"redirect": false, "hsts": true}))
        .send()
        .await
        .expect("PUT https");
    assert_eq!(settings.status(), 200);
    let settings: Value = settings.json().await.expect("json");
    assert_eq!((settings["https_redirect"].clone(), settings["hsts"].clone()), (json!(false), json!(true)));
    let applied = eventually(Duration::from_secs(10), Duration::from_millis(100), || async {
        let plain_ok = plain
            .get(format!("http://{edge}/"))
            .header("host", "shop.example.com")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200 && !r.headers().contains_key("strict-transport-security"));
        let client = wisehosting_testkit::tls::client_trusting_pem(&root)
            .resolve("shop.example.com", agent.status.https_addr().expect("https"));
        let secure = client
            .build()
            .expect("client")
            .get(format!("https://shop.example.com:{https_port}/"))
            .send()
            .await;
        plain_ok
            && secure.is_ok_and(|r| {
                r.headers().get("strict-transport-security").is_some_and(|v| v == "max-age=31536000")
            })
    })
    .await;
    assert!(applied, "no redirect, and HSTS over HTTPS only");
    // The domain removed: its certificate leaves the worker.
    let removed = user
        .request(reqwest::Method::DELETE, &format!("/api/apps/{app}/domains/shop.example.com"))
        .send()
        .await;
    assert!(removed.expect("DELETE").status().is_success());
    let gone = eventually(Duration::from_secs(10), Duration::from_millis(100), || async {
        over_https(&root, &agent, "shop.example.com").await.is_err()
    })
    .await;
    assert!(gone, "a removed domain's certificate is no longer served");

    let failed = eventually(Duration::from_secs(90), Duration::from_millis(500), || async {
        domain(&user, app, "broken.example.com").await["certificate"]["status"] == "failed"
    })
    .await;
    let broken = domain(&user, app, "broken.example.com").await;
    assert!(failed, "{broken}");
    let error = broken["certificate"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("127.0.0.2") || error.to_ascii_lowercase().contains("connection"),
        "pebble's reason: {error}"
    );
    // Tried again after its back-off (2 s, then 4 s): the failures add up.
    let retried = eventually(Duration::from_secs(60), Duration::from_millis(500), || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT failures FROM domain_certificates c JOIN domains d ON d.id = c.domain_id WHERE d.hostname = 'broken.example.com'",
        )
        .fetch_one(&cp.db)
        .await
        .is_ok_and(|f| f >= 2)
    })
    .await;
    assert!(retried, "a failed order is tried again");
    // The third failure in a row raises the app's certificate alert, naming the domain and why.
    let alert = || async {
        let alerts: Value = user.get("/api/alerts").await.json().await.expect("json");
        alerts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["kind"] == "certificate_failing" && a["app_id"] == app)
            .cloned()
    };
    let raised = eventually(Duration::from_secs(60), Duration::from_millis(500), || async {
        alert().await.is_some_and(|a| a["status"] == "firing")
    })
    .await;
    let raised_alert = alert().await;
    assert!(raised, "{raised_alert:?}");
    let message = raised_alert.and_then(|a| a["message"].as_str().map(str::to_string)).unwrap_or_default();
    assert!(message.contains("broken.example.com") && message.contains("3 times"), "{message}");
    // The name fixed, the next try issues it and the alert resolves.
    dns.set_addrs("broken.example.com", &[&["127.0.0.1".parse().expect("ip")]]);
    let resolved = eventually(Duration::from_secs(90), Duration::from_millis(500), || async {
        alert().await.is_some_and(|a| a["status"] == "resolved")
    })
    .await;
    assert!(resolved, "{:?}", alert().await);
    assert_eq!(domain(&user, app, "broken.example.com").await["certificate"]["status"], "issued");
    agent.stop().await;
}

/// A certificate is renewed before it expires: pebble issues them for 30 seconds, so the next
/// order comes once a third of that is left (not in a loop), and the domain keeps an issued
/// certificate throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_renewed_before_it_expires_and_stays_issued_meanwhile() {
    let (dns, pebble, _cp, agent, user, app) = acme_platform(Some(30)).await;
    dns.set_addrs("renew.example.com", &[&["127.0.0.1".parse().expect("ip")]]);
    verified(&user, &dns, app, "renew.example.com").await;
    let issued = eventually(Duration::from_secs(60), Duration::from_millis(250), || async {
        domain(&user, app, "renew.example.com").await["certificate"]["status"] == "issued"
    })
    .await;
    assert!(issued, "{}", domain(&user, app, "renew.example.com").await);
    let first = domain(&user, app, "renew.example.com").await["certificate"]["not_after"].clone();
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let renewed = eventually(Duration::from_secs(60), Duration::from_millis(250), || {
        let (user, first, statuses) = (&user, first.clone(), statuses.clone());
        async move {
            let now = domain(user, app, "renew.example.com").await;
            let status = now["certificate"]["status"].as_str().unwrap_or_default().to_string();
            statuses.lock().expect("lock").push(status);
            now["certificate"]["not_after"] != first
        }
    })
    .await;
    assert!(renewed, "a new certificate replaced the first before it expired");
    let statuses = statuses.lock().expect("lock").clone();
    assert!(statuses.iter().all(|s| s == "issued"), "issued throughout the renewal: {statuses:?}");
    // The edge router serves the renewed one (its not-after is the domain's new one).
    let now = domain(&user, app, "renew.example.com").await["certificate"]["not_after"].clone();
    let expected = chrono::DateTime::parse_from_rfc3339(now.as_str().expect("not_after")).expect("RFC 3339");
    let root = pebble.root_pem().await;
    let pushed = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        over_https(&root, &agent, "renew.example.com")
            .await
            .is_ok_and(|(_, _, not_after)| not_after == expected.timestamp().to_string())
    })
    .await;
    assert!(
        pushed,
        "the renewed certificate is served: {:?}",
        over_https(&root, &agent, "renew.example.com").await
    );
    agent.stop().await;
}

/// The platform's own wildcard, `*.<subdomain_base>`, ordered by DNS-01: the answer published
/// as a TXT record through Cloudflare's DNS API (the stand-in puts it in
/// `pebble-challtestsrv`, where pebble looks), deleted after; every app's own hostname is then
/// served over HTTPS with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_wildcard_is_ordered_by_dns01_through_cloudflare_and_serves_every_app() {
    let dns = ChallTestSrv::start().await;
    let cloudflare = FakeCloudflare::publishing_to(&dns).await;
    let edge = free_addr();
    let pebble = Pebble::start_issuing_for(edge.port(), dns.dns_addr, None).await;
    let (zone, token, api) = (cloudflare.zone_id.clone(), cloudflare.token.clone(), cloudflare.api_url());
    let (cp, agent, user, app) = platform_with(&pebble, edge, move |c| {
        c.subdomain_base = "apps.example.com".into();
        c.cloudflare.zone_id = zone;
        c.cloudflare.api_token = wisehosting_crypto::Secret::new(token);
        c.cloudflare.api_url = api;
        c.platform_certificate.dns01 = true;
    })
    .await;
    let slug = user.get(&format!("/api/apps/{app}")).await.json::<Value>().await.expect("json")["slug"]
        .as_str()
        .expect("slug")
        .to_string();
    let host = format!("{slug}.apps.example.com");
    let root = pebble.root_pem().await;
    let served = eventually(Duration::from_secs(90), Duration::from_millis(500), || async {
        over_https(&root, &agent, &host).await.is_ok()
    })
    .await;
    let answer = over_https(&root, &agent, &host).await;
    assert!(served, "{host} served with the wildcard: {answer:?}");
    let (status, body, _) = answer.expect("answer");
    assert_eq!((status, body.contains("shop")), (200, true), "{body}");
    let asked: Vec<(String, String)> = cloudflare
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/dns_records"))
        .map(|s| {
            (s.method, s.path.rsplit_once("/dns_records").map(|(_, id)| id.to_string()).unwrap_or_default())
        })
        .collect();
    assert!(asked.iter().any(|(m, id)| m == "POST" && id.is_empty()), "the answer published: {asked:?}");
    assert!(asked.iter().any(|(m, id)| m == "DELETE" && !id.is_empty()), "and deleted: {asked:?}");
    assert!(cloudflare.records().is_empty(), "no TXT record is left behind");
    let (names, state) = wisehosting_control_plane::store::certificates::platform_view(&cp.db)
        .await
        .expect("read")
        .expect("a platform certificate");
    assert_eq!((names, state.status.as_str()), (vec!["*.apps.example.com".to_string()], "issued"));
    assert!(over_https(&root, &agent, "a.b.apps.example.com").await.is_err(), "one label only");
    agent.stop().await;
}

/// Control planes in pairs: the one ordering (the only one with ACME here) does not hold the
/// app's worker; the other does, and pushes it the HTTP-01 answer it learns of by `NOTIFY
/// wh_challenges`: the certificate is issued and the worker serves the domain with it. One
/// account was made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_by_one_control_plane_of_a_pair_is_answered_by_the_worker_the_other_holds() {
    let dns = TestDns::start().await;
    let edge = free_addr();
    let pebble = Pebble::start_issuing_for(edge.port(), dns.addr, None).await;
    let resolver = dns.addr.to_string();
    let orderer_resolver = resolver.clone();
    // The holder: the worker's link and the user's requests, no ACME.
    let holder = spawn_control_plane_with(move |c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        c.domains.dns_resolver = resolver;
    })
    .await;
    let w = create_worker(&holder, "paired-acme").await;
    let agent = spawn_worker_with_edge(&holder, &w, &holder.base_url, edge);
    let online = agent
        .wait_for(Duration::from_secs(20), |s| s.connected.load(std::sync::atomic::Ordering::Relaxed))
        .await;
    assert!(online, "the worker connects to the holder");
    let user = holder.login("pair-owner@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("paired shop"))], "v1");
    let (app, deployment) = user.deploy("PairShop", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, Duration::from_secs(120)).await["status"], "running");

    // The orderer: the same database and secrets, ACME on.
    let acme = acme_settings(&pebble);
    let (secret, join) = (holder.config.api_server.secret.clone(), holder.config.workers.join_secret.clone());
    let orderer = wisehosting_testkit::spawn_control_plane_on(&holder.database_url, move |c| {
        c.single_machine = true;
        c.heartbeat_interval_secs = 1;
        c.api_server.secret = secret;
        c.workers.join_secret = join;
        c.domains.dns_resolver = orderer_resolver;
        c.acme = acme;
    })
    .await;
    assert!(holder.hub.is_connected(w.id) && !orderer.hub.is_connected(w.id), "the holder keeps the worker");
    // The domain is added through the orderer (the user's session is in the shared database).
    let on_orderer = UserSession::dev_login(&orderer.base_url, "pair-owner@example.com").await;
    dns.set_addrs("pair.example.com", &[&["127.0.0.1".parse().expect("ip")]]);
    verified(&on_orderer, &dns, app, "pair.example.com").await;
    let issued = eventually(Duration::from_secs(90), Duration::from_millis(500), || async {
        domain(&user, app, "pair.example.com").await["certificate"]["status"] == "issued"
    })
    .await;
    assert!(issued, "{}", domain(&user, app, "pair.example.com").await);
    let root = pebble.root_pem().await;
    let served = eventually(Duration::from_secs(20), Duration::from_millis(200), || async {
        over_https(&root, &agent, "pair.example.com")
            .await
            .is_ok_and(|(status, body, _)| status == 200 && body.contains("paired shop"))
    })
    .await;
    assert!(
        served,
        "the worker serves the domain with it: {:?}",
        over_https(&root, &agent, "pair.example.com").await
    );
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM acme_accounts").fetch_one(&holder.db).await.expect("count");
    assert_eq!(accounts, 1);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM acme_challenges")
        .fetch_one(&holder.db)
        .await
        .expect("count");
    assert_eq!(pending, 0, "the answers are dropped once the order is done");
    orderer.stop().await.expect("stop");
}
