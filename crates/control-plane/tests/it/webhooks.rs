//! Outbound webhooks through the whole platform, to a local receiver: signed deliveries of
//! real events, retries, the delivery log, redelivery, a restart mid-retry, an endpoint
//! turned off; e-mail to a local SMTP sink; and the SSRF guard's refusals (T21, T22) with
//! canary listeners that must see nothing.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_control_plane::outbound::{Guard, OutboundError};
use wisehosting_testkit::{
    PrivateCanary, Reply, SmtpSink, TcpCanary, TestDns, TestRepo, UserSession, WebhookReceiver, eventually,
    page_containerfile, spawn_control_plane_on, spawn_control_plane_with, spawn_platform,
};

const LIMIT: Duration = Duration::from_secs(120);
const EVENTS: [&str; 4] = ["alert.fired", "alert.resolved", "deployment.succeeded", "deployment.failed"];

async fn create(user: &UserSession, url: &str) -> (i64, String) {
    let r = user.post_json("/api/webhooks", &json!({"url": url, "events": EVENTS})).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let body: Value = r.json().await.expect("json");
    (body["id"].as_i64().expect("id"), body["secret"].as_str().expect("secret").to_string())
}

async fn deliveries(user: &UserSession, endpoint: i64) -> Vec<Value> {
    user.get(&format!("/api/webhooks/{endpoint}/deliveries")).await.json().await.expect("json")
}

const BROKEN: &str = "FROM localhost/wisehosting/busybox:latest\nRUN echo this build fails && exit 3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_events_reach_the_receiver_signed_after_two_failures_and_by_mail() {
    let smtp = SmtpSink::start().await;
    let smtp_port = smtp.addr.port();
    let (_cp, agent, user) = spawn_platform("hooks", "hooks@example.com", |c| {
        c.outbound.allow_private_networks = true;
        c.outbound.webhook_retry_scale = 0.01;
        c.outbound.webhook_disable_after = 3;
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = smtp_port;
        c.smtp.tls = wisehosting_control_plane::config::SmtpTls::None;
        c.smtp.from = "WiseHosting <alerts@wisehosting.test>".into();
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.script_for("deployment.failed", &[Reply::Status(500), Reply::Status(503)]);
    let (endpoint, secret) = create(&user, &receiver.url("/hooks?token=abc")).await;
    // A second endpoint that always fails is turned off after 3 tries, with an alert.
    let dead = WebhookReceiver::start().await;
    dead.script(&vec![Reply::Status(500); 20]);
    let (dead_id, _) = create(&user, &dead.url("/dead")).await;
    let listed: Vec<Value> = user.get("/api/webhooks").await.json().await.expect("json");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|e| e.get("secret").is_none()), "secrets are shown once: {listed:?}");

    // A deploy that fails: deployment.failed, and the deployment_failed alert (alert.fired).
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", BROKEN)], "broken");
    let (app, deployment) = user.deploy("Hooked", &repo.url()).await;
    let done = user.wait_deployment(deployment, LIMIT).await;
    assert_eq!(done["status"], "failed", "{done}");
    let got = eventually(Duration::from_secs(30), Duration::from_millis(100), || async {
        let r = receiver.received();
        ["deployment.failed", "alert.fired"]
            .iter()
            .all(|e| r.iter().any(|x| x.status == 200 && x.header("x-wh-event") == *e))
    })
    .await;
    let received = receiver.received();
    assert!(got, "two events delivered: {received:?}");
    let failed: Vec<_> = received.iter().filter(|r| r.header("x-wh-event") == "deployment.failed").collect();
    assert_eq!(failed.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 503, 200], "retried until a 2xx");
    let delivery_id = failed[0].header("x-wh-delivery").to_string();
    assert!(failed.iter().all(|r| r.header("x-wh-delivery") == delivery_id), "one delivery, three tries");
    assert!(failed.iter().all(|r| r.signed_with(&secret)), "each try signed with the secret");
    assert!(!failed[2].signed_with("whsec_wrong"));
    let body: Value = serde_json::from_str(&failed[2].body).expect("json body");
    assert_eq!(body["type"], "deployment.failed");
    assert_eq!(body["id"].to_string(), delivery_id);
    assert_eq!(body["data"]["deployment"]["id"], deployment);
    assert_eq!(body["data"]["deployment"]["app_id"], app);
    assert!(body["data"]["deployment"]["error"].as_str().unwrap_or("").contains("exit"), "{body}");
    assert!(body["created_at"].is_string());
    let fired = received.iter().find(|r| r.header("x-wh-event") == "alert.fired").expect("alert.fired");
    let fired: Value = serde_json::from_str(&fired.body).expect("json");
    assert_eq!(fired["data"]["alert"]["kind"], "deployment_failed");

    // The receiver has the third try as soon as it answers; the dispatcher records the answer
    // just after.
    let row_of = |log: Vec<Value>| {
        log.into_iter()
            .find(|d| d["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(delivery_id.as_str()))
            .expect("in the log")
    };
    let recorded = eventually(Duration::from_secs(10), Duration::from_millis(50), || async {
        row_of(deliveries(&user, endpoint).await)["status"] == "delivered"
    })
    .await;
    let row = row_of(deliveries(&user, endpoint).await);
    assert!(recorded, "the delivery is recorded as delivered: {row}");
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64(), row["response_status"].as_i64()),
        (Some("delivered"), Some(3), Some(200))
    );

    // The alert went out by mail too.
    let mailed = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        smtp.mails().iter().any(|m| m.data.contains("Alert: Hooked: deployment #"))
    })
    .await;
    assert!(mailed, "the alert is e-mailed: {:?}", smtp.mails());
    assert!(smtp.mails()[0].to.iter().any(|t| t.contains("hooks@example.com")));

    // The failing endpoint is off, with an alert saying so.
    let off = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        let alerts: Vec<Value> = user.get("/api/alerts?status=firing").await.json().await.unwrap_or_default();
        alerts.iter().any(|a| a["kind"] == "webhook_disabled")
    })
    .await;
    assert!(off, "webhook_disabled fires");
    let listed: Vec<Value> = user.get("/api/webhooks").await.json().await.expect("json");
    let dead_row = listed.iter().find(|e| e["id"] == dead_id).expect("listed");
    assert_eq!(dead_row["enabled"], false);
    assert!(dead_row["disabled_reason"].as_str().unwrap_or("").contains("3 failed tries"), "{dead_row}");
    assert_eq!(dead.received().len(), 3, "no tries once it is off");

    // Fixed: deployment.succeeded, and the alert resolves (alert.resolved).
    repo.commit(&[("Containerfile", &page_containerfile("fixed"))], "fixed");
    let fixed = user.redeploy(app).await;
    assert_eq!(user.wait_deployment(fixed, LIMIT).await["status"], "running");
    let both = eventually(Duration::from_secs(30), Duration::from_millis(100), || async {
        let r = receiver.received();
        ["deployment.succeeded", "alert.resolved"].iter().all(|e| {
            r.iter().any(|x| x.header("x-wh-event") == *e && x.status == 200 && x.signed_with(&secret))
        })
    })
    .await;
    assert!(both, "{:?}", receiver.received());

    // Redeliver: the same id and body again, a fresh signature.
    let before = receiver.received().len();
    let r = user
        .post_json(&format!("/api/webhooks/{endpoint}/deliveries/{delivery_id}/redeliver"), &json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let again = eventually(Duration::from_secs(20), Duration::from_millis(100), || async {
        receiver.received().len() > before
    })
    .await;
    assert!(again);
    let last = receiver.received().pop().expect("one more");
    assert_eq!(last.header("x-wh-delivery"), delivery_id);
    assert_eq!(last.body, failed[2].body);
    assert!(last.signed_with(&secret));

    // Someone else sees none of it.
    let other = _cp.login("hooks-other@example.com").await;
    assert_eq!(other.get(&format!("/api/webhooks/{endpoint}/deliveries")).await.status(), 404);
    let r = other
        .post_json(&format!("/api/webhooks/{endpoint}/deliveries/{delivery_id}/redeliver"), &json!({}))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        other
            .request(reqwest::Method::DELETE, &format!("/api/webhooks/{endpoint}"))
            .send()
            .await
            .expect("delete")
            .status(),
        404
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_control_plane_between_tries_loses_no_delivery() {
    let (cp, agent, user) = spawn_platform("hooks-restart", "restart@example.com", |c| {
        c.outbound.allow_private_networks = true;
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.script_for("deployment.failed", &[Reply::Status(500)]);
    let (endpoint, secret) = create(&user, &receiver.url("/")).await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", BROKEN)], "broken");
    let (_, deployment) = user.deploy("Restarted", &repo.url()).await;
    assert_eq!(user.wait_deployment(deployment, LIMIT).await["status"], "failed");
    // The first try fails; the next is 5–10 s away (the production schedule).
    let tried = eventually(Duration::from_secs(20), Duration::from_millis(50), || async {
        deliveries(&user, endpoint).await.iter().any(|d| d["attempts"] == 1 && d["status"] == "pending")
    })
    .await;
    assert!(tried, "{:?}", deliveries(&user, endpoint).await);
    agent.stop().await;
    let database = cp.database_url.clone();
    let config = cp.config.clone();
    cp.stop().await.expect("stops");
    let cp = spawn_control_plane_on(&database, |c| *c = config.clone()).await;
    let user = cp.login("restart@example.com").await;
    let delivered = eventually(Duration::from_secs(30), Duration::from_millis(200), || async {
        receiver.received().iter().any(|r| r.status == 200 && r.header("x-wh-event") == "deployment.failed")
    })
    .await;
    let seen: Vec<(String, String, u16)> = receiver
        .received()
        .iter()
        .map(|r| (r.header("x-wh-event").to_string(), r.header("x-wh-delivery").to_string(), r.status))
        .collect();
    assert!(delivered, "{seen:?}");
    let failed: Vec<_> =
        receiver.received().into_iter().filter(|r| r.header("x-wh-event") == "deployment.failed").collect();
    assert_eq!(failed.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 200], "{seen:?}");
    assert!(failed[1].signed_with(&secret));
    let log = deliveries(&user, endpoint).await;
    assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_private_literals_and_other_schemes_are_refused_at_creation_and_canaries_see_nothing() {
    let dns = TestDns::start().await;
    dns.set_addrs("localhost", &[&["127.0.0.1".parse().expect("ip")]]);
    let resolver = dns.addr.to_string();
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.outbound.dns_resolver = resolver;
    })
    .await;
    let user = cp.login("t21@example.com").await;
    let loopback = TcpCanary::bind("0.0.0.0:0", false).await;
    let private = PrivateCanary::start().await;
    let p = loopback.port;
    let urls = [
        format!("http://127.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://100.64.0.1/".to_string(),
        format!("http://{}:{}/", private.private, private.port),
        format!("http://{}:{}/", private.mesh, private.port),
        "http://10.1.2.3/".to_string(),
        "http://192.168.0.1/".to_string(),
        format!("http://localhost:{p}/"),
        format!("http://user@127.0.0.1:{p}/"),
        format!("ftp://127.0.0.1:{p}/"),
        "file:///etc/passwd".to_string(),
        format!("gopher://127.0.0.1:{p}/"),
    ];
    for url in &urls {
        let r = user.post_json("/api/webhooks", &json!({"url": url, "events": ["alert.fired"]})).await;
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["code"], "url_not_allowed", "{url}: {body}");
    }
    let listed: Vec<Value> = user.get("/api/webhooks").await.json().await.expect("json");
    assert!(listed.is_empty(), "nothing was created: {listed:?}");
    assert_eq!((loopback.hits(), private.hits()), (0, 0), "no canary was reached");
    // The canaries do count: a control connection reaches each.
    let _ = tokio::net::TcpStream::connect(("127.0.0.1", p)).await.expect("control");
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(20), || async { loopback.hits() == 1 })
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_rebinding_names_mixed_answers_and_redirects_never_reach_a_private_address() {
    let dns = TestDns::start().await;
    let canary = TcpCanary::bind("0.0.0.0:0", false).await;
    let public: IpAddr = "192.88.0.9".parse().expect("ip");
    let private: IpAddr = "127.0.0.1".parse().expect("ip");
    dns.set_addrs("rebind.test", &[&[public], &[private]]);
    dns.set_addrs("both.test", &[&[public, private]]);
    let guard = Guard::new(Some(dns.addr), false, Duration::from_millis(300)).expect("guard");
    let p = canary.port;
    let mut refused = 0;
    for i in 0..1000 {
        let url =
            if i % 2 == 0 { format!("http://rebind.test:{p}/") } else { format!("http://both.test:{p}/") };
        // A public answer may meet whatever is (or is not) there; it is not the canary.
        if let Err(OutboundError::NotAllowed(_)) = guard.post(&url, &[], "{}".into()).await {
            refused += 1;
        }
    }
    assert_eq!(canary.hits(), 0, "the canary saw nothing over 1,000 tries");
    assert!(refused >= 700, "the private answers and every mixed answer are refused: {refused}");

    // A redirect to the canary is an answer, never followed (even where private addresses
    // are allowed, as in a lab).
    let receiver = WebhookReceiver::start().await;
    let lab = Guard::new(Some(dns.addr), true, Duration::from_secs(2)).expect("guard");
    for _ in 0..10 {
        receiver.script(&[Reply::Redirect(format!("http://127.0.0.1:{p}/"))]);
        let answer = lab.post(&receiver.url("/"), &[], "{}".into()).await.expect("an answer");
        assert_eq!(answer.status, 302);
    }
    assert_eq!(canary.hits(), 0, "no redirect was followed");
    let _ = tokio::net::TcpStream::connect(("127.0.0.1", p)).await.expect("control");
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(20), || async { canary.hits() == 1 }).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_gets_one_delivery_at_a_time_and_shutdown_waits_for_a_send_in_flight() {
    let (cp, agent, user) = spawn_platform("hooks-order", "order@example.com", |c| {
        c.outbound.allow_private_networks = true;
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    // Each answer takes 300 ms: deliveries sent in parallel would overlap.
    receiver.script(&vec![Reply::Hang(Duration::from_millis(300)); 20]);
    let (endpoint, _) = create(&user, &receiver.url("/")).await;
    let repo = TestRepo::new();
    repo.commit(&[("Containerfile", BROKEN)], "broken");
    // Three failed deploys: three deployment.failed (and one alert.fired) for one endpoint.
    let (app, first) = user.deploy("Ordered", &repo.url()).await;
    assert_eq!(user.wait_deployment(first, LIMIT).await["status"], "failed");
    for _ in 0..2 {
        let next = user.redeploy(app).await;
        assert_eq!(user.wait_deployment(next, LIMIT).await["status"], "failed");
    }
    let all = eventually(Duration::from_secs(30), Duration::from_millis(50), || async {
        receiver.received().iter().filter(|r| r.header("x-wh-event") == "deployment.failed").count() == 3
    })
    .await;
    assert!(all, "{:?}", receiver.received().len());
    assert_eq!(receiver.most_in_flight(), 1, "never two sends to one endpoint at once");
    let ids: Vec<i64> = receiver
        .received()
        .iter()
        .filter(|r| r.header("x-wh-event") == "deployment.failed")
        .map(|r| r.header("x-wh-delivery").parse().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in the order they were queued: {ids:?}");

    // A send in flight when shutdown begins is finished and recorded.
    receiver.script(&[Reply::Hang(Duration::from_secs(2))]);
    let before = receiver.received().len();
    let r = user
        .post_json(&format!("/api/webhooks/{endpoint}/deliveries/{}/redeliver", ids[0]), &json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let started = eventually(Duration::from_secs(10), Duration::from_millis(20), || async {
        receiver.received().len() > before
    })
    .await;
    assert!(started, "the redelivery is being sent");
    agent.stop().await;
    let database = cp.database_url.clone();
    cp.stop().await.expect("stops");
    let db = sqlx::PgPool::connect(&database).await.expect("connect");
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM webhook_deliveries WHERE id = $1")
            .bind(ids[0])
            .fetch_one(&db)
            .await
            .expect("row");
    assert_eq!(
        (status.as_str(), attempts),
        ("delivered", 2),
        "the send in flight was waited for and recorded"
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_a_timeout_not_a_hang() {
    let receiver = WebhookReceiver::start().await;
    receiver.script(&[Reply::Hang(Duration::from_secs(5))]);
    let guard = Guard::new(None, true, Duration::from_millis(300)).expect("guard");
    let started = std::time::Instant::now();
    let answer = guard.post(&receiver.url("/slow"), &[], "{}".into()).await;
    assert!(matches!(answer, Err(OutboundError::Timeout(_))), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
