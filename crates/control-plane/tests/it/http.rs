use serde_json::Value;
use wisehosting_control_plane::db;
use wisehosting_crypto::Secret;
use wisehosting_testkit::{spawn_control_plane, spawn_control_plane_with};

#[tokio::test]
async fn health_and_ready_answer_200_on_a_migrated_database() {
    let cp = spawn_control_plane().await;
    let health: Value = cp.get_json("/health", 200).await;
    assert_eq!(health["status"], "ok");
    let ready: Value = cp.get_json("/ready", 200).await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn ready_answers_503_when_migrations_are_not_current() {
    let cp = spawn_control_plane().await;
    db::migrate_down(&cp.db, 1).await.expect("down 1");
    let body: Value = cp.get_json("/ready", 503).await;
    assert_eq!(body["code"], "not_ready");
    assert!(body["message"].as_str().unwrap_or_default().contains("migrate up"), "{body}");
}

#[tokio::test]
async fn ready_answers_503_database_unavailable_when_the_pool_is_gone() {
    let cp = spawn_control_plane().await;
    // `close` marks the pool closed at once; its future then waits for every checked-out
    // connection, and the dispatcher's LISTEN connection stays checked out until its task ends
    // (with the control plane), so that wait is bounded here rather than awaited to the end.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), cp.db.close()).await;
    assert!(cp.db.is_closed());
    let body: Value = cp.get_json("/ready", 503).await;
    assert_eq!(body["code"], "database_unavailable");
}

#[tokio::test]
async fn metrics_answer_only_a_scraper_with_the_token() {
    let cp = spawn_control_plane().await;
    assert_eq!(cp.get("/metrics").await.status(), 401, "no token");
    let wrong = cp.client.get(cp.url("/metrics")).bearer_auth("not-the-token").send().await.expect("GET");
    assert_eq!(wrong.status(), 401, "a wrong token");
    assert!(cp.metrics().await.contains("wisehosting_http_requests_total"));
    let off =
        spawn_control_plane_with(|c| c.api_server.metrics_token = wisehosting_crypto::Secret::default())
            .await;
    let answer = off.get("/metrics").await;
    assert_eq!(answer.status(), 404, "off without a token");
    let body: serde_json::Value = answer.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or_default().contains("metrics_token"), "{body}");
}

#[tokio::test]
async fn metrics_count_answered_requests_in_prometheus_text() {
    let cp = spawn_control_plane().await;
    cp.get("/health").await;
    cp.get("/api/nowhere").await;
    let body = cp.metrics().await;
    assert!(body.contains("wisehosting_http_requests_total{class=\"2xx\"} 1"), "{body}");
    assert!(body.contains("wisehosting_http_requests_total{class=\"4xx\"} 1"), "{body}");
    assert!(body.contains("# TYPE wisehosting_http_request_duration_seconds histogram"));
}

#[tokio::test]
async fn errors_are_json_with_a_stable_code_and_a_request_id() {
    let cp = spawn_control_plane().await;
    let response = cp.get("/api/nothing-here").await;
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn the_internal_api_is_off_without_a_token() {
    let cp = spawn_control_plane().await;
    assert!(cp.internal_addr.is_none());
}

#[tokio::test]
async fn the_internal_api_refuses_every_token_but_the_exact_one() {
    let token = "internal-token-0123456789abcdef";
    let cp = spawn_control_plane_with(|c| c.internal_api.token = Secret::new(token)).await;
    let addr = cp.internal_addr.expect("internal api enabled");
    assert!(addr.ip().is_loopback());
    let url = format!("http://{addr}/internal-api/health");
    let wrong_byte = format!("{}X", &token[..token.len() - 1]);
    let prefix = &token[..10];
    for header in [
        None,
        Some(String::new()),
        Some(format!("Bearer {prefix}")),
        Some(format!("Bearer {wrong_byte}")),
        Some(format!("Bearer {token}x")),
        Some(token.to_string()),
    ] {
        let mut req = cp.client.get(&url);
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let response = req.send().await.expect("send");
        assert_eq!(response.status(), 401, "header {header:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "unauthorized");
    }
    let ok = cp.client.get(&url).bearer_auth(token).send().await.expect("send");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn stopping_finishes_cleanly_and_closes_the_pool() {
    let cp = spawn_control_plane().await;
    let pool = cp.db.clone();
    cp.stop().await.expect("clean stop");
    assert!(pool.is_closed());
}

/// Sends one raw HTTP/1.1 request with the given `Host` (and `Origin`) and returns the answer.
async fn raw_request(addr: std::net::SocketAddr, host: &str, origin: Option<&str>, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /api/auth/dev-login HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// T38: in single-machine mode a DNS-rebinding page (a foreign name pointing at 127.0.0.1)
/// reaches no endpoint, the password-less dev login included.
#[tokio::test]
async fn single_machine_mode_answers_only_requests_that_name_this_machine() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let port = cp.addr.port();
    let body = r#"{"email":"rebound@example.com"}"#;
    for (host, origin) in [
        (format!("attacker.example:{port}"), None),
        (format!("localhost.attacker.example:{port}"), None),
        (format!("127.0.0.1:{port}"), Some("http://attacker.example")),
        (format!("127.0.0.1:{port}"), Some("null")),
    ] {
        let answer = raw_request(cp.addr, &host, origin, body).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{host} {origin:?}: {answer}");
        assert!(answer.contains("loopback name"), "{answer}");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&cp.db).await.expect("count");
    assert_eq!(users, 0, "no login went through");
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("app.localhost:{port}")] {
        let answer = raw_request(cp.addr, &host, Some(&format!("http://{host}")), body).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    // Outside single-machine mode the names are the operator's business (a proxy in front).
    let served = spawn_control_plane().await;
    let answer = raw_request(served.addr, "app.example.com", None, body).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "dev-login stays 404, not refused by name: {answer}");
}

#[tokio::test]
async fn a_user_over_the_per_user_request_limit_waits_and_others_do_not() {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.user_requests_per_minute = 5;
    })
    .await;
    let busy = cp.login("busy@example.com").await;
    for _ in 0..5 {
        assert_eq!(busy.get("/api/apps").await.status(), 200);
    }
    let refused = busy.get("/api/apps").await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited");
    let calm = cp.login("calm@example.com").await;
    assert_eq!(calm.get("/api/apps").await.status(), 200, "another user is not slowed down");
}
