//! Custom domains through the whole platform: strict hostnames, one owner across users, DNS TXT
//! verification against a local DNS server, routing through the edge router only once
//! verified, audit rows, and Cloudflare for SaaS against a local stand-in of its API.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wisehosting_control_plane::cloudflare::Cloudflare;
use wisehosting_control_plane::config::CloudflareConfig;
use wisehosting_control_plane::dns::{DnsError, TxtResolver};
use wisehosting_testkit::{
    FakeCloudflare, SpawnedWorker, TestControlPlane, TestDns, TestRepo, UserSession, eventually,
    page_containerfile, spawn_control_plane_with, spawn_platform,
};

const LIMIT: Duration = Duration::from_secs(120);

async fn via_edge(agent: &SpawnedWorker, host: &str) -> (u16, String) {
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    let edge = agent.status.edge_addr().expect("the edge router listens");
    match client.get(format!("http://{edge}/")).header("host", host).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// A control plane in single-machine mode (no worker) that reads TXT records from a local
/// DNS server.
async fn control_plane_with_dns() -> (TestDns, TestControlPlane) {
    let dns = TestDns::start().await;
    let resolver = dns.addr.to_string();
    let cp = spawn_control_plane_with(move |c| {
        c.single_machine = true;
        c.domains.dns_resolver = resolver;
    })
    .await;
    (dns, cp)
}

async fn add_domain(user: &UserSession, app: i64, hostname: &str) -> (u16, Value) {
    let r = user.post_json(&format!("/api/apps/{app}/domains"), &json!({ "hostname": hostname })).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn verify(user: &UserSession, app: i64, hostname: &str) -> (u16, Value) {
    let r = user.post_json(&format!("/api/apps/{app}/domains/{hostname}/verify"), &json!({})).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_domain_is_routed_only_after_its_txt_record_verifies_and_belongs_to_one_app() {
    let dns = TestDns::start().await;
    let resolver = dns.addr.to_string();
    let (cp, agent, user) =
        spawn_platform("domains", "owner@example.com", move |c| c.domains.dns_resolver = resolver).await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", &page_containerfile("shop v1"))], "v1");
    let (app, deployment) = user.deploy("Shop", &repo.url()).await;
    let done = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");

    // Added: shown with the record to publish, not routed.
    let (status, domain) = add_domain(&user, app, "  Shop.Example.COM. ").await;
    assert_eq!(status, 201, "{domain}");
    assert_eq!(domain["hostname"], "shop.example.com");
    assert_eq!(domain["status"], "pending_verification");
    assert_eq!(domain["verification"]["type"], "TXT");
    assert_eq!(domain["verification"]["name"], "_wisehosting-challenge.shop.example.com");
    let token = domain["verification"]["value"].as_str().expect("token").to_string();
    assert!(token.starts_with("wisehosting-verify=") && token.len() > 40, "{token}");
    assert_eq!(via_edge(&agent, "shop.example.com").await.0, 404, "an unverified domain is not routed");

    // Verify before the record exists, then with only a wrong one: refused, saying what to add.
    let (status, body) = verify(&user, app, "shop.example.com").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "verification_failed");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("_wisehosting-challenge.shop.example.com") && message.contains(&token),
        "{message}"
    );
    dns.set_txt("_wisehosting-challenge.shop.example.com", &["wisehosting-verify=someone-else"]);
    let (status, body) = verify(&user, app, "shop.example.com").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("someone-else"), "{body}");
    assert_eq!(via_edge(&agent, "shop.example.com").await.0, 404);

    // The right record, among records long enough that the UDP answer is truncated (the
    // resolver must retry over TCP): verified, then served by the edge router at once.
    let (filler_a, filler_b) = ("a".repeat(250), "b".repeat(250));
    dns.set_txt("_wisehosting-challenge.shop.example.com", &[&filler_a, &filler_b, &token]);
    let (status, body) = verify(&user, app, "Shop.example.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "verified");
    assert!(body["verified_at"].is_string());
    let verified_at = Instant::now();
    let routed = eventually(Duration::from_secs(5), Duration::from_millis(5), || async {
        via_edge(&agent, "shop.example.com").await == (200, "shop v1\n".to_string())
    })
    .await;
    assert!(routed, "a verified domain is routed");
    println!("custom domain: verified to served by the edge router in {:?}", verified_at.elapsed());
    assert_eq!(via_edge(&agent, "shop.localhost").await.0, 200, "the platform hostname still works");
    let listed: Value = user.get(&format!("/api/apps/{app}/domains")).await.json().await.expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["status"], "verified");
    let (status, again) = verify(&user, app, "shop.example.com").await;
    assert_eq!(
        (status, &again["verified_at"]),
        (200, &body["verified_at"]),
        "verifying again changes nothing"
    );

    // Another user: the same hostname is refused; their app's id does not show this app's domains.
    let other = cp.login("other@example.com").await;
    let (_, other_deployment) = other.deploy("Other Shop", &repo.url()).await;
    let other_app: i64 = sqlx::query_scalar("SELECT app_id FROM deployments WHERE id = $1")
        .bind(other_deployment)
        .fetch_one(&cp.db)
        .await
        .expect("app");
    let (status, body) = add_domain(&other, other_app, "SHOP.example.com").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("already in use by another app"), "{body}");
    assert_eq!(other.get(&format!("/api/apps/{app}/domains")).await.status(), 404);
    assert_eq!(
        other
            .request(Method::DELETE, &format!("/api/apps/{app}/domains/shop.example.com"))
            .send()
            .await
            .expect("DELETE")
            .status(),
        404
    );
    let (status, _) = add_domain(&user, app, "shop.example.com").await;
    assert_eq!(status, 409, "the same app twice");

    // Bad hostnames, each with a reason; platform names are not for users.
    for (bad, reason) in [
        ("10.0.0.7", "IP address"),
        ("[::1]", "IP address"),
        ("https://evil.example.com/", "is a URL"),
        ("*.example.net", "wildcard"),
        ("a..example.net", "not a valid domain name"),
        ("bad_label.example.net", "not a valid domain name"),
        ("example.net:8443", "port"),
        ("com", "single label"),
        ("shop.localhost", "platform's own"),
        (&format!("{}.example.net", "x".repeat(64)), "not a valid domain name"),
    ] {
        let (status, body) = add_domain(&other, other_app, bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_input", "{bad}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("hostname: ") && message.contains(reason), "{bad}: {message}");
    }
    let (status, body) = add_domain(&user, app, "www.shop.example.org").await;
    assert_eq!(status, 402, "the free plan allows one custom domain per app: {body}");
    assert_eq!(body["code"], "plan_limit", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("custom_domains"), "{body}");

    // Removed: no longer routed; every step audited.
    let r = user
        .request(Method::DELETE, &format!("/api/apps/{app}/domains/shop.example.com"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 204);
    let unrouted = eventually(Duration::from_secs(5), Duration::from_millis(10), || async {
        via_edge(&agent, "shop.example.com").await.0 == 404
    })
    .await;
    assert!(unrouted, "a removed domain stops being routed");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE action LIKE 'domain.%' AND target_id = $1 ORDER BY id",
    )
    .bind(app.to_string())
    .fetch_all(&cp.db)
    .await
    .expect("audit");
    assert_eq!(actions, ["domain.added", "domain.verified", "domain.deleted"]);
    agent.stop().await;
}

#[tokio::test]
async fn the_txt_resolver_reads_nxdomain_as_no_record_and_times_out_on_a_silent_server() {
    let dns = TestDns::start().await;
    let resolver = TxtResolver::new(Some(dns.addr), Duration::from_millis(500)).expect("resolver");
    assert_eq!(
        resolver.txt("_wisehosting-challenge.nowhere.example").await.expect("answer"),
        Vec::<String>::new()
    );
    dns.set_txt("_wisehosting-challenge.here.example", &["one", "two"]);
    assert_eq!(
        resolver.txt("_wisehosting-challenge.HERE.example.").await.expect("answer"),
        vec!["one".to_string(), "two".to_string()]
    );
    // Over 512 bytes: the UDP answer is truncated and read again over TCP.
    let long: Vec<String> = (0..6).map(|i| format!("{i}{}", "x".repeat(200))).collect();
    dns.set_txt("_wisehosting-challenge.big.example", &long.iter().map(String::as_str).collect::<Vec<_>>());
    let mut got = resolver.txt("_wisehosting-challenge.big.example").await.expect("answer over TCP");
    got.sort();
    assert_eq!(got, long);
    // A socket that never answers: three tries, then a timeout error (not a hang).
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let resolver = TxtResolver::new(Some(silent.local_addr().expect("addr")), Duration::from_millis(100))
        .expect("resolver");
    let started = Instant::now();
    let err = resolver.txt("x.example").await.expect_err("no answer");
    assert!(matches!(err, DnsError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn cloudflare_for_saas_registers_shows_refreshes_and_removes_custom_hostnames() {
    let fake = FakeCloudflare::start().await;
    let dns = TestDns::start().await;
    let (zone, token, api_url, resolver) =
        (fake.zone_id.clone(), fake.token.clone(), fake.api_url(), dns.addr.to_string());
    let cp = spawn_control_plane_with(move |c| {
        c.single_machine = true;
        c.domains.dns_resolver = resolver;
        c.cloudflare.zone_id = zone;
        c.cloudflare.api_token = wisehosting_crypto::Secret::new(token);
        c.cloudflare.api_url = api_url;
    })
    .await;
    let user = cp.login("saas@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("index.html", "hi")], "v1");
    // No worker: the apps stay queued, which is enough to hold domains.
    let (app, _) = user.deploy("Saas One", &repo.url()).await;
    let (app2, _) = user.deploy("Saas Two", &repo.url()).await;

    // A claim nobody proved costs nothing at Cloudflare.
    let (status, domain) = add_domain(&user, app, "shop.customer.example").await;
    assert_eq!(status, 201, "{domain}");
    assert!(domain["cloudflare"].is_null(), "{domain}");
    assert!(fake.hostnames().is_empty());

    // Verified: registered, with the records to publish for its certificate.
    dns.set_txt(
        "_wisehosting-challenge.shop.customer.example",
        &[domain["verification"]["value"].as_str().expect("token")],
    );
    let (status, verified) = verify(&user, app, "shop.customer.example").await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["status"], "verified");
    let cf = &verified["cloudflare"];
    assert!(cf["id"].as_str().is_some_and(|id| !id.is_empty()), "{verified}");
    assert_eq!(cf["status"], "pending");
    assert_eq!(cf["ssl_status"], "pending_validation");
    let names: Vec<&str> =
        cf["records"].as_array().expect("records").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["_cf-custom-hostname.shop.customer.example", "_acme-challenge.shop.customer.example"]);
    assert_eq!(fake.hostnames(), ["shop.customer.example"]);

    // Cloudflare's progress shows up when the user verifies again.
    fake.set_status("shop.customer.example", "active", "active");
    let (status, verified) = verify(&user, app, "shop.customer.example").await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["cloudflare"]["status"], "active");
    assert_eq!(verified["cloudflare"]["ssl_status"], "active");

    // Cloudflare failing at verification: our verification stands (the domain is routed), the
    // registration is missing, and the next verify call makes it.
    let (status, body) = add_domain(&user, app2, "two.customer.example").await;
    assert_eq!(status, 201, "{body}");
    dns.set_txt(
        "_wisehosting-challenge.two.customer.example",
        &[body["verification"]["value"].as_str().expect("token")],
    );
    fake.fail_next();
    let (status, body) = verify(&user, app2, "two.customer.example").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "verified");
    assert!(body["cloudflare"].is_null(), "{body}");
    assert_eq!(fake.hostnames(), ["shop.customer.example"]);
    let (status, body) = verify(&user, app2, "two.customer.example").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cloudflare"]["status"], "pending", "{body}");
    assert_eq!(fake.hostnames(), ["shop.customer.example", "two.customer.example"]);

    // Removing the domain removes the custom hostname; deleting an app removes its own.
    let r = user
        .request(Method::DELETE, &format!("/api/apps/{app}/domains/shop.customer.example"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 204);
    assert_eq!(fake.hostnames(), ["two.customer.example"]);
    let r = user.request(Method::DELETE, &format!("/api/apps/{app2}")).send().await.expect("DELETE");
    assert!(r.status().is_success(), "{}", r.status());
    assert!(fake.hostnames().is_empty(), "deleting the app removes its custom hostnames");

    // Every call carried the token, and none of it shows in our answers.
    let seen = fake.seen();
    assert!(seen.len() >= 5 && seen.iter().all(|s| s.authorized), "{seen:?}");
    assert!(!verified.to_string().contains(&fake.token) && !body.to_string().contains(&fake.token));

    // A wrong token: Cloudflare's own error, named, without the token.
    let config = CloudflareConfig {
        zone_id: fake.zone_id.clone(),
        api_token: wisehosting_crypto::Secret::new("wrong-token-value".to_string()),
        api_url: fake.api_url(),
    };
    let client = Cloudflare::from_config(&config).expect("client").expect("configured");
    let err = client.create("x.customer.example").await.expect_err("refused").to_string();
    assert!(err.contains("403") && err.contains("[10000] Authentication error"), "{err}");
    assert!(!err.contains("wrong-token-value"), "{err}");
}

#[tokio::test]
async fn a_user_hammering_domain_verification_is_slowed_down() {
    let (_dns, cp) = control_plane_with_dns().await;
    let user = cp.login("hammer@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("index.html", "hi")], "v1");
    let (app, _) = user.deploy("Hammer", &repo.url()).await;
    let (status, _) = add_domain(&user, app, "hammer.example.net").await;
    assert_eq!(status, 201);
    // 20 adds and verifications per user per minute; the add counted as one.
    let mut statuses = Vec::new();
    for _ in 0..21 {
        let r =
            user.post_json(&format!("/api/apps/{app}/domains/hammer.example.net/verify"), &json!({})).await;
        let retry_after = r.headers().get("retry-after").is_some();
        statuses.push((r.status().as_u16(), retry_after));
    }
    assert!(statuses[..19].iter().all(|s| *s == (422, false)), "{statuses:?}");
    assert!(statuses[19..].iter().all(|s| *s == (429, true)), "{statuses:?}");
    // Another user is not slowed down by this one.
    let other = cp.login("calm@example.com").await;
    let (other_app, _) = other.deploy("Calm", &repo.url()).await;
    assert_eq!(add_domain(&other, other_app, "calm.example.net").await.0, 201);
}

/// An unverified claim blocks no one: a squatter's pending claim does not stop the owner, the
/// first to verify wins and the other claims are dropped, two verifications at once have one
/// winner, and a claim left unverified for 7 days lapses.
#[tokio::test]
async fn a_pending_claim_blocks_no_one_and_the_first_to_verify_wins() {
    let (dns, cp) = control_plane_with_dns().await;
    let repo = TestRepo::new();
    repo.commit(&[("index.html", "hi")], "v1");
    let squatter = cp.login("squatter@example.com").await;
    let owner = cp.login("owner@example.com").await;
    let (squatter_app, _) = squatter.deploy("Squat", &repo.url()).await;
    let (owner_app, _) = owner.deploy("Real", &repo.url()).await;

    let (status, squat) = add_domain(&squatter, squatter_app, "brand.example.com").await;
    assert_eq!(status, 201, "{squat}");
    assert!(squat["expires_at"].is_string(), "a pending claim says when it lapses: {squat}");
    let (status, claim) = add_domain(&owner, owner_app, "brand.example.com").await;
    assert_eq!(status, 201, "a pending claim elsewhere does not block: {claim}");
    assert_ne!(claim["verification"]["value"], squat["verification"]["value"], "a token per claim");

    // The owner publishes their token; the squatter's does not verify, the owner's does.
    let name = "_wisehosting-challenge.brand.example.com";
    dns.set_txt(name, &[claim["verification"]["value"].as_str().expect("token")]);
    assert_eq!(verify(&squatter, squatter_app, "brand.example.com").await.0, 422);
    let (status, verified) = verify(&owner, owner_app, "brand.example.com").await;
    assert_eq!(status, 200, "{verified}");
    assert!(verified["expires_at"].is_null(), "{verified}");
    // The squatter's claim is gone, and the hostname is now taken.
    let listed: Value =
        squatter.get(&format!("/api/apps/{squatter_app}/domains")).await.json().await.expect("json");
    assert_eq!(listed, json!([]));
    assert_eq!(verify(&squatter, squatter_app, "brand.example.com").await.0, 404);
    let (status, body) = add_domain(&squatter, squatter_app, "brand.example.com").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("already in use by another app"), "{body}");

    // Two apps holding valid records verify at the same moment: exactly one wins.
    let (a, b) = (cp.login("a@example.com").await, cp.login("b@example.com").await);
    let (app_a, _) = a.deploy("Race A", &repo.url()).await;
    let (app_b, _) = b.deploy("Race B", &repo.url()).await;
    let (_, claim_a) = add_domain(&a, app_a, "race.example.com").await;
    let (_, claim_b) = add_domain(&b, app_b, "race.example.com").await;
    let tokens =
        [&claim_a, &claim_b].map(|c| c["verification"]["value"].as_str().expect("token").to_string());
    dns.set_txt("_wisehosting-challenge.race.example.com", &[&tokens[0], &tokens[1]]);
    let (ra, rb) = tokio::join!(verify(&a, app_a, "race.example.com"), verify(&b, app_b, "race.example.com"));
    let mut statuses = [ra.0, rb.0];
    statuses.sort_unstable();
    assert!(statuses == [200, 404] || statuses == [200, 409], "one winner: {ra:?} {rb:?}");
    let verified: i64 =
        sqlx::query_scalar("SELECT count(*) FROM domains WHERE hostname = 'race.example.com'")
            .fetch_one(&cp.db)
            .await
            .expect("count");
    assert_eq!(verified, 1, "the loser's claim was dropped");

    // A claim unverified for 7 days lapses: not shown, not counted, deleted by the pruning.
    let lazy = cp.login("lazy@example.com").await;
    let (lazy_app, _) = lazy.deploy("Lazy", &repo.url()).await;
    assert_eq!(add_domain(&lazy, lazy_app, "late.example.com").await.0, 201);
    sqlx::query("UPDATE domains SET created_at = now() - interval '7 days 1 minute' WHERE hostname = 'late.example.com'")
        .execute(&cp.db)
        .await
        .expect("age the claim");
    let listed: Value = lazy.get(&format!("/api/apps/{lazy_app}/domains")).await.json().await.expect("json");
    assert_eq!(listed, json!([]), "a lapsed claim is not shown");
    let (status, again) = add_domain(&lazy, lazy_app, "late.example.com").await;
    assert_eq!(status, 201, "a lapsed claim does not count against the plan: {again}");
    sqlx::query(
        "UPDATE domains SET created_at = now() - interval '8 days' WHERE hostname = 'late.example.com'",
    )
    .execute(&cp.db)
    .await
    .expect("age the claim");
    let pruned = wisehosting_control_plane::store::domains::prune_expired(&cp.db).await.expect("prune");
    assert!(pruned >= 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM domains WHERE hostname = 'late.example.com'")
        .fetch_one(&cp.db)
        .await
        .expect("count");
    assert_eq!(left, 0);
}
