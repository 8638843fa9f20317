//! The worker link over real sockets: registration (T10), what a worker holds (T34), JWTs
//! before the upgrade (T11), the
//! envelope's receive checks (T13), WebSocket abuse (T15), admin queries (T16), and a frame
//! built by hand from the spec (interop).

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};
use wisehosting_control_plane::hub::HubError;
use wisehosting_control_plane::store;
use wisehosting_crypto::jwt::{AUDIENCE, ISSUER, sign_claims, sign_worker_token};
use wisehosting_crypto::{Keyring, Purpose, Secret};
use wisehosting_proto::envelope::seal_frame;
use wisehosting_proto::messages::{AdminQueryReply, Heartbeat, Hello};
use wisehosting_proto::{DirectionKey, LinkKeys, MAX_FRAME_BYTES, MAX_SKEW_MS, ServerMessage};
use wisehosting_testkit::worker::now_ms;
use wisehosting_testkit::{
    RawWorker, TestControlPlane, create_worker, eventually, open_ws, spawn_control_plane,
    spawn_control_plane_with,
};

async fn status_of(cp: &TestControlPlane, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM workers WHERE id = $1")
        .bind(id)
        .fetch_one(&cp.db)
        .await
        .expect("status")
}

async fn wait_status(cp: &TestControlPlane, id: i64, want: &str) -> bool {
    for _ in 0..100 {
        if status_of(cp, id).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn metric(cp: &TestControlPlane, line_prefix: &str) -> u64 {
    let body = cp.metrics().await;
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---- T10: registration ----

#[tokio::test]
async fn registration_answers_the_spec_shape_and_wrong_secret_or_key_look_alike() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "reg-1").await;
    let ok = cp.register(&w).await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["worker_id"], w.id);
    assert!(body["token"].as_str().unwrap_or_default().split('.').count() == 3);
    let expires = body["token_expires_at"].as_str().unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(expires).is_ok(), "{expires}");

    let mut answers = Vec::new();
    for (secret, key) in
        [("wrong-secret", w.api_key.as_str()), (cp.config.workers.join_secret.expose(), "whk_wrong")]
    {
        let response = cp
            .client
            .post(cp.url("/v1/workers/register"))
            .json(&json!({"secret": secret, "api_key": key, "name": "reg-1", "version": "x", "zone": null,
                          "capacity": {"cpus": 1, "memory_mb": 1}, "wg_public_key": null}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401);
        answers.push(response.json::<Value>().await.expect("json"));
    }
    assert_eq!(answers[0], answers[1], "the same answer for a wrong secret and a wrong key");
    assert_eq!(answers[0]["code"], "unauthorized");
    let refused: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'worker.register_refused'")
            .fetch_one(&cp.db)
            .await
            .expect("count");
    let registered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'worker.registered'")
            .fetch_one(&cp.db)
            .await
            .expect("count");
    assert_eq!((refused, registered), (2, 1));
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(detail::text || coalesce(ip, ''), ' ') FROM audit_events")
            .fetch_one(&cp.db)
            .await
            .expect("dump");
    assert!(!dump.contains("wrong-secret") && !dump.contains(&w.api_key), "audit holds no secrets: {dump}");
}

#[tokio::test]
async fn registration_is_rate_limited_per_ip() {
    let cp = spawn_control_plane_with(|c| c.worker_auth_per_minute = 5).await;
    let w = create_worker(&cp, "limited").await;
    for _ in 0..5 {
        assert_eq!(cp.register(&w).await.status(), 200);
    }
    let response = cp.register(&w).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn a_worker_name_cannot_be_taken_over_with_another_key() {
    let cp = spawn_control_plane().await;
    let a = create_worker(&cp, "name-a").await;
    let b = create_worker(&cp, "name-b").await;
    let hijack = wisehosting_testkit::TestWorker { name: a.name.clone(), ..b.clone() };
    let response = cp.register(&hijack).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert!(body.get("token").is_none());
}

#[tokio::test]
async fn refresh_token_takes_the_raw_key_as_bearer() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "refresher").await;
    let ok = cp
        .client
        .post(cp.url("/v1/workers/refresh-token"))
        .bearer_auth(&w.api_key)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["worker_id"], w.id);
    for bad in [Some("whk_nope"), None] {
        let mut req = cp.client.post(cp.url("/v1/workers/refresh-token"));
        if let Some(key) = bad {
            req = req.bearer_auth(key);
        }
        assert_eq!(req.send().await.expect("send").status(), 401);
    }
}

#[tokio::test]
async fn a_database_dump_alone_cannot_forge_an_envelope() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "dumped").await;
    let (hash, sealed): (String, String) =
        sqlx::query_as("SELECT api_key_hash, mac_key_sealed FROM workers WHERE id = $1")
            .bind(w.id)
            .fetch_one(&cp.db)
            .await
            .expect("row");
    let mut raw = RawWorker::connect(&cp, &w).await;
    // The original design keyed frames with sha256(raw key), the stored hash; and the sealed
    // column is not a key either. Neither verifies.
    let mut dump_keys = Vec::new();
    let hash_bytes: [u8; 32] = hex::decode(&hash).expect("hex").try_into().expect("32");
    dump_keys.push(LinkKeys::derive(&hash_bytes, &raw.connection_id).c2s);
    dump_keys.push(DirectionKey::from_bytes(hash_bytes));
    let mut sealed_bytes = [0u8; 32];
    sealed_bytes.copy_from_slice(&sealed.as_bytes()[..32]);
    dump_keys.push(LinkKeys::derive(&sealed_bytes, &raw.connection_id).c2s);
    let key = dump_keys.remove(0);
    let forged = seal_frame(&key, "hello", &"ab".repeat(16), 1, now_ms(), "{}");
    raw.send_text(forged).await;
    assert_eq!(raw.expect_error_and_close().await, "bad_mac");
    for key in dump_keys {
        let mut raw = RawWorker::connect(&cp, &w).await;
        raw.send_text(seal_frame(&key, "hello", &"ab".repeat(16), 1, now_ms(), "{}")).await;
        assert_eq!(raw.expect_error_and_close().await, "bad_mac");
    }
    assert_eq!(status_of(&cp, w.id).await, "pending", "no forged hello marked it online");
}

// ---- T34: what a worker holds ----

#[tokio::test]
async fn what_a_worker_is_configured_with_opens_nothing_sealed_and_signs_no_jwt() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let w = create_worker(&cp, "untrusted").await;
    let user = cp.login("held@example.com").await;
    let repo = wisehosting_testkit::TestRepo::new();
    repo.commit(&[("index.html", "hi")], "v1");
    let deployed = user
        .post_json(
            "/api/deploy",
            &json!({"name": "held", "repo_url": repo.url(), "port": 8080,
                    "env": {"CANARY": "env-canary-7f3a"}, "git_token": "tok-canary-7f3a"}),
        )
        .await;
    assert_eq!(deployed.status(), 201);
    let app = deployed.json::<Value>().await.expect("json")["app"]["id"].as_i64().expect("app id");

    let sealer_of = |secret: &Secret| {
        let keys = Keyring::from_master(secret);
        let sealer = wisehosting_crypto::Sealer::new(1, [(1, keys.key(Purpose::ColumnEncryption).clone())])
            .expect("sealer");
        (sealer, keys.key(Purpose::WorkerJwt).clone())
    };
    // The control plane's own keys open and sign: the checks below can fail.
    let (master_sealer, master_jwt) = sealer_of(&cp.config.api_server.secret);
    let env = store::apps::load_env(&cp.db, &master_sealer, app).await.expect("the master opens env");
    assert_eq!(env.get("CANARY").map(String::as_str), Some("env-canary-7f3a"));
    let now = chrono::Utc::now().timestamp();
    assert!(open_ws(&cp, &sign_worker_token(&master_jwt, w.id, now, 600)).await.is_ok());

    // Everything a worker is configured with: its API key and the join secret (SPEC §4.1).
    let held = [cp.config.workers.join_secret.clone(), Secret::new(w.api_key.clone())];
    for secret in &held {
        let (sealer, jwt) = sealer_of(secret);
        assert!(store::apps::load_env(&cp.db, &sealer, app).await.is_err(), "env opened");
        assert!(store::apps::load_git_token(&cp.db, &sealer, app).await.is_err(), "git token opened");
        let sealed: String = sqlx::query_scalar("SELECT mac_key_sealed FROM workers WHERE id = $1")
            .bind(w.id)
            .fetch_one(&cp.db)
            .await
            .expect("row");
        assert!(sealer.open(&sealed, store::workers::mac_key_aad(&w.id.to_string())).is_err());
        assert_refused_before_upgrade(&cp, &sign_worker_token(&jwt, w.id, now, 600), "worker-held key").await;
    }

    // The master presented as the join secret is refused like any wrong secret.
    let response = cp
        .client
        .post(cp.url("/v1/workers/register"))
        .json(&json!({"secret": cp.config.api_server.secret.expose(), "api_key": w.api_key, "name": w.name,
                      "version": "x", "zone": null, "capacity": {"cpus": 1, "memory_mb": 1}, "wg_public_key": null}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    assert_eq!(cp.register(&w).await.status(), 200, "the join secret registers");
}

// ---- T11: JWTs, refused before the upgrade ----

fn jwt_key(cp: &TestControlPlane) -> wisehosting_crypto::PurposeKey {
    Keyring::from_master(&cp.config.api_server.secret).key(Purpose::WorkerJwt).clone()
}

fn forge(header: Value, claims: Value, key: &wisehosting_crypto::PurposeKey) -> String {
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (h, p) = (b64.encode(header.to_string()), b64.encode(claims.to_string()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", b64.encode(mac.finalize().into_bytes()))
}

async fn assert_refused_before_upgrade(cp: &TestControlPlane, token: &str, case: &str) {
    match open_ws(cp, token).await {
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            assert!(status == 401 || status == 431, "{case}: status {status}");
        }
        Err(other) => panic!("{case}: unexpected error {other}"),
        Ok(_) => panic!("{case}: upgraded"),
    }
}

#[tokio::test]
async fn every_bad_token_is_refused_before_the_upgrade() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "jwt-target").await;
    let key = jwt_key(&cp);
    let now = chrono::Utc::now().timestamp();
    let sub = w.id.to_string();
    let claims = |exp: i64| json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": exp, "iat": now});
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rotated = Keyring::from_master(&Secret::new("a rotated master secret of enough length"))
        .key(Purpose::WorkerJwt)
        .clone();
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("garbage", "not.a.jwt".into()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64.encode(json!({"alg": "none"}).to_string()),
                b64.encode(claims(now + 60).to_string())
            ),
        ),
        ("HS512", forge(json!({"alg": "HS512"}), claims(now + 60), &key)),
        ("RS256", forge(json!({"alg": "RS256"}), claims(now + 60), &key)),
        (
            "no exp",
            forge(hs256.clone(), json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now}), &key),
        ),
        ("exp one second past", forge(hs256.clone(), claims(now - 1), &key)),
        (
            "future nbf",
            forge(
                hs256.clone(),
                json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 60, "iat": now, "nbf": now + 30}),
                &key,
            ),
        ),
        (
            "wrong aud",
            forge(
                hs256.clone(),
                json!({"iss": ISSUER, "aud": "wisehosting-admin", "sub": sub, "exp": now + 60, "iat": now}),
                &key,
            ),
        ),
        (
            "wrong iss",
            forge(
                hs256.clone(),
                json!({"iss": "evil", "aud": AUDIENCE, "sub": sub, "exp": now + 60, "iat": now}),
                &key,
            ),
        ),
        (
            "unknown worker",
            forge(
                hs256.clone(),
                json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "999999", "exp": now + 60, "iat": now}),
                &key,
            ),
        ),
        ("rotated secret", sign_claims(&rotated, &claims(now + 60))),
        ("1 MB", "a".repeat(1_000_000)),
    ];
    for (case, token) in cases {
        assert_refused_before_upgrade(&cp, &token, case).await;
    }
    assert!(metric(&cp, "wisehosting_hub_upgrade_refusals_total").await >= 11);
    // The right token still works.
    let good = cp.token(&w).await;
    assert!(open_ws(&cp, &good).await.is_ok());
}

#[tokio::test]
async fn a_token_is_bound_to_its_own_worker() {
    let cp = spawn_control_plane().await;
    let a = create_worker(&cp, "bound-a").await;
    let b = create_worker(&cp, "bound-b").await;
    // A's token opens A's connection, whose frames must be signed with A's key: B's key fails.
    let token_a = cp.token(&a).await;
    let (ws, connection_id) = open_ws(&cp, &token_a).await.expect("upgrade");
    let b_keys = LinkKeys::derive(&wisehosting_proto::mac_key_from_api_key(&b.api_key), &connection_id);
    let a_keys = LinkKeys::derive(&wisehosting_proto::mac_key_from_api_key(&a.api_key), &connection_id);
    let mut raw = RawWorker {
        worker: a.clone(),
        ws,
        connection_id,
        sender: wisehosting_proto::Sender::new(b_keys.c2s.clone()),
        receiver: wisehosting_proto::Receiver::new(a_keys.s2c.clone()),
        keys: a_keys,
    };
    assert!(matches!(raw.recv().await, Some(ServerMessage::Welcome(_))));
    raw.send(&Hello::default()).await;
    assert_eq!(raw.expect_error_and_close().await, "bad_mac");
    // An auth_refresh carrying B's token on A's connection ends it.
    let mut raw = RawWorker::connect(&cp, &a).await;
    let token_b = cp.token(&b).await;
    raw.send(&wisehosting_proto::messages::AuthRefresh { token: token_b }).await;
    assert_eq!(raw.expect_error_and_close().await, "token_expired");
}

#[tokio::test]
async fn a_connection_whose_token_lapses_is_closed_unless_refreshed() {
    let cp = spawn_control_plane_with(|c| c.worker_token_ttl_secs = 5).await;
    let w = create_worker(&cp, "lapsing").await;
    let mut lapsing = RawWorker::connect(&cp, &w).await;
    let mut refreshed = RawWorker::connect_online(&cp, &create_worker(&cp, "refreshed").await).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fresh = cp.token(&refreshed.worker).await;
    refreshed.send(&wisehosting_proto::messages::AuthRefresh { token: fresh }).await;
    assert_eq!(lapsing.expect_error_and_close().await, "token_expired");
    // The refreshed one outlives the first token.
    refreshed.send(&Heartbeat { cpu_pct: 7.0, ..Heartbeat::default() }).await;
    let id = refreshed.worker.id;
    let handled = eventually(Duration::from_secs(5), Duration::from_millis(20), || async {
        cp.hub.snapshot(id).map(|h| h.cpu_pct) == Some(7.0)
    })
    .await;
    assert!(handled && cp.hub.is_connected(id), "the refreshed connection lives on");
}

// ---- T13: the envelope ----

#[tokio::test]
async fn replays_reorders_windows_and_jumps() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "seq").await;
    let id = || hex::encode(wisehosting_crypto::random_bytes::<16>());

    // Reordered inside the window: 2 before 1, both accepted; then 1 again is a replay.
    let mut raw = RawWorker::connect(&cp, &w).await;
    let hb = serde_json::to_string(&Heartbeat::default()).expect("json");
    let two = seal_frame(&raw.keys.c2s, "heartbeat", &id(), 2, now_ms(), &hb);
    let one = seal_frame(&raw.keys.c2s, "hello", &id(), 1, now_ms(), "{\"version\":\"t\"}");
    raw.send_text(two.clone()).await;
    raw.send_text(one.clone()).await;
    assert!(wait_status(&cp, w.id, "online").await, "the reordered hello was accepted");
    raw.send_text(one).await;
    assert_eq!(raw.expect_error_and_close().await, "replayed_sequence");

    // An exact replay.
    let mut raw = RawWorker::connect(&cp, &w).await;
    let frame = seal_frame(&raw.keys.c2s, "heartbeat", &id(), 1, now_ms(), &hb);
    raw.send_text(frame.clone()).await;
    raw.send_text(frame).await;
    assert_eq!(raw.expect_error_and_close().await, "replayed_sequence");

    // Below the window.
    let mut raw = RawWorker::connect(&cp, &w).await;
    raw.send_text(seal_frame(&raw.keys.c2s, "heartbeat", &id(), 300, now_ms(), &hb)).await;
    raw.send_text(seal_frame(&raw.keys.c2s, "heartbeat", &id(), 10, now_ms(), &hb)).await;
    assert_eq!(raw.expect_error_and_close().await, "replayed_sequence");

    // A huge jump.
    let mut raw = RawWorker::connect(&cp, &w).await;
    raw.send_text(seal_frame(&raw.keys.c2s, "heartbeat", &id(), 1 << 40, now_ms(), &hb)).await;
    assert_eq!(raw.expect_error_and_close().await, "sequence_gap");
    assert!(metric(&cp, "wisehosting_envelope_rejections_total{code=\"replayed_sequence\"}").await >= 3);
}

#[tokio::test]
async fn one_changed_bit_in_each_field_and_a_skewed_clock_are_refused() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "bits").await;
    let now = now_ms();
    let i = "0123456789abcdef0123456789abcdef";
    type Flip = Box<dyn Fn(&str) -> String>;
    let flips: Vec<(&str, Flip)> = vec![
        ("t", Box::new(|f: &str| f.replacen("\"heartbeat\"", "\"heartbeau\"", 1))),
        ("i", Box::new(move |f: &str| f.replacen(i, "1123456789abcdef0123456789abcdef", 1))),
        ("s", Box::new(|f: &str| f.replacen("\"s\":1,", "\"s\":3,", 1))),
        (
            "ts",
            Box::new(move |f: &str| f.replacen(&format!("\"ts\":{now}"), &format!("\"ts\":{}", now + 1), 1)),
        ),
        ("p", Box::new(|f: &str| f.replacen("\"load1\":0.0", "\"load1\":1.0", 1))),
        (
            "h",
            Box::new(|f: &str| {
                let at = f.rfind("\"h\":\"").expect("h") + 5;
                let mut b = f.as_bytes().to_vec();
                b[at] = if b[at] == b'0' { b'1' } else { b'0' };
                String::from_utf8(b).expect("utf8")
            }),
        ),
    ];
    let hb = serde_json::to_string(&Heartbeat::default()).expect("json");
    for (field, flip) in flips {
        let mut raw = RawWorker::connect(&cp, &w).await;
        let good = seal_frame(&raw.keys.c2s, "heartbeat", i, 1, now, &hb);
        let bad = flip(&good);
        assert_ne!(bad, good, "{field} changed");
        raw.send_text(bad).await;
        assert_eq!(raw.expect_error_and_close().await, "bad_mac", "{field}");
    }
    for (offset, expected) in [
        (MAX_SKEW_MS + 1000, Some("stale_timestamp")),
        (-MAX_SKEW_MS - 1000, Some("stale_timestamp")),
        (MAX_SKEW_MS - 1000, None),
        (-MAX_SKEW_MS + 1000, None),
    ] {
        // After the hello (sequence 1), so an accepted heartbeat is applied.
        let mut raw = RawWorker::connect_online(&cp, &w).await;
        raw.send_text(seal_frame(&raw.keys.c2s, "heartbeat", i, 2, now_ms() + offset, &hb)).await;
        match expected {
            Some(code) => assert_eq!(raw.expect_error_and_close().await, code, "offset {offset}"),
            None => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert!(cp.hub.snapshot(w.id).is_some(), "offset {offset} accepted");
            }
        }
    }
    assert!(metric(&cp, "wisehosting_envelope_rejections_total{code=\"bad_mac\"}").await >= 6);
    assert!(metric(&cp, "wisehosting_envelope_rejections_total{code=\"stale_timestamp\"}").await >= 2);
}

#[tokio::test]
async fn a_reflected_frame_and_a_frame_from_the_previous_connection_are_refused() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "reflect").await;
    // Reflect the welcome back exactly as it came.
    let token = cp.token(&w).await;
    let (mut ws, _) = open_ws(&cp, &token).await.expect("upgrade");
    let Some(Ok(Message::Text(welcome))) = ws.next().await else { panic!("no welcome") };
    ws.send(Message::Text(welcome)).await.expect("send");
    let mut saw_error = false;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            saw_error |= t.contains("\"t\":\"error\"");
        }
    }
    assert!(saw_error, "the reflected frame got an error and the socket closed");

    // A frame captured on one connection, replayed on the next.
    let mut first = RawWorker::connect(&cp, &w).await;
    let captured = seal_frame(&first.keys.c2s, "heartbeat", &"cd".repeat(16), 1, now_ms(), "{}");
    first.send_text(captured.clone()).await;
    drop(first);
    let mut second = RawWorker::connect(&cp, &w).await;
    second.send_text(captured).await;
    assert_eq!(second.expect_error_and_close().await, "bad_mac");
}

#[tokio::test]
async fn oversize_binary_and_unknown_frames() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "sizes").await;
    let mut raw = RawWorker::connect(&cp, &w).await;
    let padding = "x".repeat(MAX_FRAME_BYTES);
    let big = seal_frame(
        &raw.keys.c2s,
        "log",
        &"ab".repeat(16),
        1,
        now_ms(),
        &format!("{{\"lines\":[\"{padding}\"]}}"),
    );
    raw.send_text(big).await;
    assert_eq!(raw.expect_error_and_close().await, "frame_too_large");

    let mut raw = RawWorker::connect(&cp, &w).await;
    raw.ws.send(Message::Binary(vec![1, 2, 3].into())).await.expect("send");
    assert_eq!(raw.expect_error_and_close().await, "bad_frame");

    // Far past the cap: the socket layer refuses it and the connection ends.
    let mut raw = RawWorker::connect(&cp, &w).await;
    let _ = raw.ws.send(Message::Text("y".repeat(MAX_FRAME_BYTES * 2).into())).await;
    assert!(raw.recv().await.is_none() || raw.recv().await.is_none());

    // An unknown type is ignored (SPEC §4.3: append-only protocol): counted, not fatal.
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let teleport = raw.sender.seal_raw("teleport", [9; 16], now_ms(), "{}");
    raw.send_text(teleport).await;
    raw.send(&Heartbeat { cpu_pct: 2.0, ..Heartbeat::default() }).await;
    let handled = eventually(Duration::from_secs(5), Duration::from_millis(20), || async {
        cp.hub.snapshot(w.id).map(|h| h.cpu_pct) == Some(2.0)
    })
    .await;
    assert!(handled, "frames after it are handled");
    assert!(cp.hub.is_connected(w.id), "still connected after an unknown type");
    assert_eq!(metric(&cp, "wisehosting_hub_unknown_messages_total").await, 1);
    assert!(metric(&cp, "wisehosting_envelope_rejections_total{code=\"frame_too_large\"}").await >= 1);
}

// ---- T15 ----

#[tokio::test]
async fn a_failed_upgrade_closes_the_tcp_connection() {
    let cp = spawn_control_plane().await;
    let mut stream = tokio::net::TcpStream::connect(cp.addr).await.expect("connect");
    let request = format!(
        "GET /v1/workers/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer nope\r\n\r\n",
        cp.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the server kept the TCP connection open");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

// ---- Admin queries (T16, CP side) and hub state ----

#[tokio::test]
async fn the_hub_refuses_commands_outside_the_five_and_offline_workers() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "admin-q").await;
    for bad in ["exec", "rm", "; id", "$(whoami)", "-a", "ps --all", "PS"] {
        assert_eq!(
            cp.hub.worker_query(w.id, bad, Duration::from_secs(1)).await,
            Err(HubError::UnknownCommand),
            "{bad}"
        );
    }
    assert_eq!(cp.hub.worker_query(w.id, "ps", Duration::from_secs(1)).await, Err(HubError::Offline));
}

#[tokio::test]
async fn admin_replies_route_by_query_id_and_stray_ones_are_dropped() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "replier").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let hub = cp.hub.clone();
    let id = w.id;
    let query = tokio::spawn(async move { hub.worker_query(id, "image_ls", Duration::from_secs(5)).await });
    let Some(ServerMessage::AdminQuery(q)) = raw.recv().await else { panic!("no admin_query") };
    assert_eq!(q.command, "image_ls");
    assert!(q.query_id.starts_with("q-"));
    raw.send(&AdminQueryReply {
        query_id: "q-0-stray".into(),
        command: "ps".into(),
        output: "stray".into(),
        err: None,
    })
    .await;
    raw.send(&AdminQueryReply { query_id: q.query_id, command: q.command, output: "[]".into(), err: None })
        .await;
    let reply = query.await.expect("join").expect("reply");
    assert_eq!(reply.output, "[]");
    // Nobody answers: the caller's deadline holds.
    assert_eq!(cp.hub.worker_query(w.id, "ps", Duration::from_millis(300)).await, Err(HubError::Timeout));
}

#[tokio::test]
async fn heartbeats_are_kept_in_memory_and_flushed_to_the_database_at_shutdown() {
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "beating").await;
    let mut raw = RawWorker::connect_online(&cp, &w).await;
    let last_heartbeat_at = || async {
        let at: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT last_heartbeat_at FROM workers WHERE id = $1")
                .bind(w.id)
                .fetch_one(&cp.db)
                .await
                .expect("row");
        at
    };
    // The hello marks it online (a write); heartbeats after it are not written one by one.
    let online_at = last_heartbeat_at().await;
    raw.send(&Heartbeat { mem_total_bytes: 42, ..Heartbeat::default() }).await;
    let handled = eventually(Duration::from_secs(5), Duration::from_millis(20), || async {
        cp.hub.snapshot(w.id).map(|h| h.mem_total_bytes) == Some(42)
    })
    .await;
    assert!(handled, "the heartbeat was handled");
    assert_eq!(last_heartbeat_at().await, online_at, "no write per heartbeat");
    let db = cp.db.clone();
    let url = cp.database_url.clone();
    cp.stop().await.expect("stop");
    drop(db);
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let after: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_heartbeat_at FROM workers WHERE id = $1")
            .bind(w.id)
            .fetch_one(&pool)
            .await
            .expect("row");
    assert!(after > online_at, "the heartbeat's time was flushed at shutdown: {after:?} after {online_at:?}");
}

// ---- Interop: a frame built from the spec's words alone ----

#[tokio::test]
async fn a_frame_built_by_hand_from_the_spec_is_accepted() {
    use hmac::Mac;
    type HmacSha256 = hmac::Hmac<sha2::Sha256>;
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "interop").await;
    let token = cp.token(&w).await;
    let (mut ws, connection_id) = open_ws(&cp, &token).await.expect("upgrade");
    let _welcome = ws.next().await;

    // mac_key = HKDF-SHA256(ikm = raw key text, no salt, info = "wisehosting-envelope-v1"), 32 bytes.
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, w.api_key.as_bytes());
    let mut mac_key = [0u8; 32];
    hk.expand(b"wisehosting-envelope-v1", &mut mac_key).expect("expand");
    // k_c2s = HMAC-SHA256(mac_key, "c2s|" + connection id).
    let mut k = HmacSha256::new_from_slice(&mac_key).expect("key");
    k.update(format!("c2s|{connection_id}").as_bytes());
    let k_c2s = k.finalize().into_bytes();
    // h = hex HMAC(k_c2s, t|i|s|ts|p) with p exactly as written in the frame.
    let (t, i, s, ts) = ("hello", "00112233445566778899aabbccddeeff", 1u64, now_ms());
    let p = r#"{ "version": "interop-1.0",  "containers": [] }"#;
    let mut m = HmacSha256::new_from_slice(&k_c2s).expect("key");
    m.update(format!("{t}|{i}|{s}|{ts}|{p}").as_bytes());
    let h = hex::encode(m.finalize().into_bytes());
    let frame = format!(r#"{{"t":"{t}","i":"{i}","s":{s},"ts":{ts},"p":{p},"h":"{h}"}}"#);
    ws.send(Message::Text(frame.into())).await.expect("send");
    assert!(wait_status(&cp, w.id, "online").await, "the hand-built hello was accepted");
    let version: Option<String> = sqlx::query_scalar("SELECT version FROM workers WHERE id = $1")
        .bind(w.id)
        .fetch_one(&cp.db)
        .await
        .expect("row");
    assert_eq!(version.as_deref(), Some("interop-1.0"));
}

#[tokio::test]
async fn idle_and_slow_sockets_are_dropped_and_a_thousand_of_them_do_not_block_others() {
    let cp = spawn_control_plane_with(|c| c.api_server.header_read_timeout_secs = 1).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(cp.addr).await.expect("connect"));
    }
    // A slow upgrade: half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(cp.addr).await.expect("connect");
    slow.write_all(b"GET /v1/workers/ws HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let health = cp.get("/health").await;
    assert_eq!(health.status(), 200, "the server answers others while 1,000 sockets sit idle");
    let mut closed = 0;
    for mut socket in idle.into_iter().chain(std::iter::once(slow)) {
        let mut buf = Vec::new();
        if tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut buf)).await.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 1001, "every idle or slow socket was closed by the header timeout");
}

#[tokio::test]
async fn invalid_utf8_ends_the_connection_and_a_ping_flood_does_not_stop_the_link() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let cp = spawn_control_plane().await;
    let w = create_worker(&cp, "abuse").await;
    let mut raw = RawWorker::connect(&cp, &w).await;
    let bad = Frame::message(vec![0xff, 0xfe, 0x80], OpCode::Data(Data::Text), true);
    let _ = raw.ws.send(Message::Frame(bad)).await;
    assert!(raw.recv().await.is_none(), "invalid UTF-8 closed the connection");

    let mut raw = RawWorker::connect_online(&cp, &w).await;
    for i in 0..5_000u32 {
        raw.ws.feed(Message::Ping(i.to_be_bytes().to_vec().into())).await.expect("ping");
    }
    raw.ws.flush().await.expect("flush");
    raw.send(&Heartbeat { load1: 7.0, ..Heartbeat::default() }).await;
    let mut seen = false;
    for _ in 0..100 {
        if cp.hub.snapshot(w.id).map(|h| h.load1) == Some(7.0) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the heartbeat after 5,000 pings was handled");
    assert_eq!(cp.get("/health").await.status(), 200);
}

/// Mesh addresses (SPEC §11) come from registration: a worker that sends its WireGuard public
/// key gets the lowest free address of 10.50.0.0/24 (never 10.50.0.1, the control plane's),
/// keeps it across registrations and a new key, and `workers.wg_ip` is what the proxy reads; a
/// worker without a key has none; a malformed key is refused naming the field. The real
/// agent makes its own key and registers with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_gives_each_keyed_worker_a_stable_mesh_address() {
    use wisehosting_crypto::wireguard::WgPrivateKey;
    let cp = spawn_control_plane().await;
    let register = |name: &'static str, key: String, wg: Option<String>| {
        let cp = &cp;
        async move {
            cp.client
                .post(cp.url("/v1/workers/register"))
                .json(&json!({"secret": cp.config.workers.join_secret.expose(), "api_key": key, "name": name,
                              "version": "x", "zone": null, "capacity": {"cpus": 1, "memory_mb": 1},
                              "wg_public_key": wg}))
                .send()
                .await
                .expect("send")
        }
    };
    let (a, b, c) = (
        create_worker(&cp, "mesh-a").await,
        create_worker(&cp, "mesh-b").await,
        create_worker(&cp, "mesh-c").await,
    );
    let public = || Some(WgPrivateKey::generate().public_key().to_string());
    let ip = |r: Value| r["wg_ip"].clone();
    let first = register("mesh-a", a.api_key.clone(), public()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(ip(first.json().await.expect("json")), "10.50.0.2");
    let second: Value = register("mesh-b", b.api_key.clone(), public()).await.json().await.expect("json");
    assert_eq!(ip(second), "10.50.0.3");
    let again: Value = register("mesh-a", a.api_key.clone(), public()).await.json().await.expect("json");
    assert_eq!(ip(again), "10.50.0.2", "stable across registrations, a new key included");
    let keyless: Value = register("mesh-c", c.api_key.clone(), None).await.json().await.expect("json");
    assert_eq!(ip(keyless), Value::Null, "no key, no mesh address");
    let bad = register("mesh-c", c.api_key.clone(), Some("not-a-key".into())).await;
    assert_eq!(bad.status(), 422);
    let said = bad.text().await.unwrap_or_default();
    assert!(said.contains("wg_public_key") && said.contains("wg pubkey"), "{said}");
    let refreshed: Value = cp
        .client
        .post(cp.url("/v1/workers/refresh-token"))
        .bearer_auth(&b.api_key)
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("json");
    assert_eq!(ip(refreshed), "10.50.0.3", "a refresh answers the same shape");

    // The real agent: its key made in its data dir, its address given at registration.
    let d = create_worker(&cp, "mesh-d").await;
    let agent = wisehosting_testkit::spawn_worker(&cp, &d, &cp.base_url);
    let joined = agent.wait_for(Duration::from_secs(15), |s| s.wg_ip().is_some()).await;
    assert!(joined, "the agent registers with its own key");
    assert_eq!(agent.status.wg_ip(), Some([10, 50, 0, 4].into()));
    let stored: Option<String> =
        sqlx::query_scalar("SELECT wg_public_key FROM workers WHERE name = 'mesh-d'")
            .fetch_one(&cp.db)
            .await
            .expect("key");
    assert!(stored.is_some_and(|k| k.len() == 44), "its public key is kept");
    agent.stop().await;
}
