//! Sign-in with an OpenID provider (a stand-in on loopback that the production client talks
//! to unchanged), the second factor, and API tokens (SECURITY-TESTS T01, T03, T04).

use std::time::Duration;

use serde_json::{Value, json};
use wisehosting_testkit::{
    Browser, FakeOidc, Forgery, spawn_control_plane_with, spawn_control_plane_with_oidc,
};

/// Rows of `action` in the audit trail.
async fn audit_count(db: &sqlx::PgPool, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = $1")
        .bind(action)
        .fetch_one(db)
        .await
        .expect("count")
}

async fn live_sessions(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE revoked_at IS NULL")
        .fetch_one(db)
        .await
        .expect("count")
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.replace("%3A", ":").replace("%2F", "/").replace("+", " ").replace("%20", " "))
    })
}

#[tokio::test]
async fn a_person_signs_in_at_the_provider_with_pkce_state_and_nonce_and_gets_a_fresh_session() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut browser = Browser::new(&cp.base_url);
    // A session cookie planted before sign-in (session fixation) is not the one after.
    browser.cookies.insert("wh_session".into(), "whs_planted".into());
    let start = browser.get("/api/auth/google/login").await;
    assert_eq!(start.status(), 302);
    let set_cookie =
        start.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(set_cookie.starts_with("wh_oidc=") && set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/") && !set_cookie.contains("Domain"), "{set_cookie}");
    let to_provider = Browser::location(&start);
    assert!(to_provider.starts_with(&format!("{}/authorize?", idp.issuer())), "{to_provider}");
    let consent = browser.get(&to_provider).await;
    let asked = idp.last_authorize();
    assert_eq!(asked.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(asked.get("client_id"), Some(&idp.client_id));
    assert_eq!(asked.get("redirect_uri"), Some(&format!("{}/api/auth/google/callback", cp.base_url)));
    let scope = asked.get("scope").cloned().unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "openid") && scope.split(' ').any(|s| s == "email"), "{scope}");
    assert_eq!(asked.get("code_challenge_method").map(String::as_str), Some("S256"));
    for param in ["state", "nonce", "code_challenge"] {
        assert!(asked.get(param).is_some_and(|v| v.len() >= 22), "{param} is long and random: {asked:?}");
    }
    let landed = browser.finish(&Browser::location(&consent)).await;
    assert_eq!(landed, "/");
    let session = browser.cookies.get("wh_session").cloned().unwrap_or_default();
    assert!(session.starts_with("whs_") && session != "whs_planted", "a new session token: {session}");
    assert!(!browser.cookies.contains_key("wh_oidc"), "the sign-in cookie is cleared");
    let me: Value = browser.get("/api/me").await.json().await.expect("json");
    assert_eq!(me["user"]["email"], "ada@example.com", "{me}");
    assert_eq!(me["user"]["name"], "Ada", "{me}");
    assert_eq!(me["platform"]["sign_in"]["oidc"], true, "{me}");
    let stored: String =
        sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_one(&cp.db).await.expect("row");
    assert_ne!(stored, session, "only the token's hash is stored");
    assert_eq!(audit_count(&cp.db, "auth.login").await, 1);
    // The same state cannot be used twice: replaying the callback signs no one in.
    let replay = browser.finish(&Browser::location(&consent)).await;
    assert_eq!(replay, "/login?error=bad_state");
}

#[tokio::test]
async fn every_forged_callback_ends_at_login_with_its_error_no_session_and_an_audit_row() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let forgeries = [
        (Forgery::WrongAudience, "invalid_token"),
        (Forgery::WrongIssuer, "invalid_token"),
        (Forgery::Expired, "invalid_token"),
        (Forgery::AlgNone, "invalid_token"),
        (Forgery::Hs256WithPublicKey, "invalid_token"),
        (Forgery::UnknownKid, "invalid_token"),
        (Forgery::NoNonce, "invalid_token"),
        (Forgery::WrongNonce, "invalid_token"),
        (Forgery::EmailUnverified, "email_unverified"),
    ];
    let mut failures = 0;
    for (forgery, code) in forgeries {
        idp.forge_next(forgery);
        let mut browser = Browser::new(&cp.base_url);
        let landed = browser.sign_in().await;
        assert_eq!(landed, format!("/login?error={code}"), "{forgery:?}");
        assert!(!browser.has_session(), "{forgery:?}: no session cookie");
        failures += 1;
    }

    // A wrong state.
    let mut browser = Browser::new(&cp.base_url);
    let start = browser.get("/api/auth/google/login").await;
    let consent = browser.get(&Browser::location(&start)).await;
    let callback = Browser::location(&consent);
    let state = query_param(&callback, "state").expect("state");
    let tampered = callback.replace(&state, &format!("{state}x"));
    assert_eq!(browser.finish(&tampered).await, "/login?error=bad_state");
    failures += 1;

    // The callback opened in another browser (a link sent to a victim): its state is bound to
    // the browser that began the sign-in.
    let mut attacker = Browser::new(&cp.base_url);
    let start = attacker.get("/api/auth/google/login").await;
    let consent = attacker.get(&Browser::location(&start)).await;
    let stolen = Browser::location(&consent);
    let mut victim = Browser::new(&cp.base_url);
    assert_eq!(victim.finish(&stolen).await, "/login?error=bad_state");
    assert!(!victim.has_session());
    failures += 1;
    // The attacker's own, untouched sign-in still works (the victim's try did not consume it).
    assert_eq!(attacker.finish(&stolen).await, "/");

    // A code used twice: a new sign-in in this browser, but the old (spent) code.
    let spent_code = query_param(&stolen, "code").expect("code");
    let start = attacker.get("/api/auth/google/login").await;
    let consent = attacker.get(&Browser::location(&start)).await;
    let fresh = Browser::location(&consent);
    let fresh_code = query_param(&fresh, "code").expect("code");
    assert_eq!(attacker.finish(&fresh.replace(&fresh_code, &spent_code)).await, "/login?error=code_rejected");
    failures += 1;

    // The provider refused (the person clicked "Cancel").
    let mut browser = Browser::new(&cp.base_url);
    let landed = browser.finish("/api/auth/google/callback?error=access_denied&state=x").await;
    assert_eq!(landed, "/login?error=provider_error");
    failures += 1;

    assert_eq!(audit_count(&cp.db, "auth.login_failed").await, failures, "one audit row per failure");
    assert_eq!(live_sessions(&cp.db).await, 1, "only the attacker's own sign-in made a session");
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'reason' FROM audit_events WHERE action = 'auth.login_failed' ORDER BY id",
    )
    .fetch_all(&cp.db)
    .await
    .expect("reasons");
    assert!(
        reasons.contains(&"email_unverified".to_string()) && reasons.contains(&"code_rejected".into()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn rotated_keys_are_fetched_again_and_forged_key_ids_cannot_make_us_fetch_more_than_once_per_floor() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    assert_eq!(Browser::new(&cp.base_url).sign_in().await, "/");
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1), "discovery and keys are cached");
    assert_eq!(Browser::new(&cp.base_url).sign_in().await, "/");
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1), "the second sign-in uses the cache");

    idp.rotate_keys();
    assert_eq!(Browser::new(&cp.base_url).sign_in().await, "/", "a token signed by the new key is accepted");
    assert_eq!(idp.jwks_fetches(), 2, "the unknown kid made one fetch of the key set");

    for _ in 0..3 {
        idp.forge_next(Forgery::UnknownKid);
        assert_eq!(Browser::new(&cp.base_url).sign_in().await, "/login?error=invalid_token");
    }
    assert_eq!(idp.jwks_fetches(), 2, "within the floor, forged kids fetch nothing");
}

#[tokio::test]
async fn users_are_keyed_by_issuer_and_subject_and_their_email_follows_the_provider() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    idp.set_user("sub-1", "first@example.com", "First");
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/");
    let before: Value = browser.get("/api/me").await.json().await.expect("json");
    idp.set_user("sub-1", "renamed@example.com", "First");
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/");
    let after: Value = browser.get("/api/me").await.json().await.expect("json");
    assert_eq!(after["user"]["id"], before["user"]["id"], "the same account");
    assert_eq!(after["user"]["email"], "renamed@example.com");
    // Another subject claiming that email does not get the account.
    idp.set_user("sub-2", "renamed@example.com", "Impostor");
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/login?error=email_taken");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&cp.db).await.expect("count");
    assert_eq!(users, 1);
}

#[tokio::test]
async fn thirty_sign_in_starts_a_minute_are_allowed_and_past_the_limit_429_says_when_to_retry() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |c| c.sign_in_per_minute = 30).await;
    let mut browser = Browser::new(&cp.base_url);
    for i in 0..30 {
        assert_eq!(browser.get("/api/auth/google/login").await.status(), 302, "start {}", i + 1);
    }
    let over = browser.get("/api/auth/google/login").await;
    assert_eq!(over.status(), 429);
    let retry: u64 =
        over.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn without_a_configured_provider_the_login_says_how_to_configure_one() {
    let cp = spawn_control_plane_with(|_| {}).await;
    let response = cp.get("/api/auth/google/login").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or_default().contains("oidc.client_id"), "{body}");
}

/// The current TOTP code of a base32 secret at `unix` (computed here, independently).
fn code_at(secret_base32: &str, unix: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).expect("base32");
    let totp = totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec().into_boxed_slice())
        .build_noncompliant();
    totp.generate(unix).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// Posts a second-factor code with the browser's `wh_2fa` cookie.
async fn post(browser: &mut Browser, code: String) -> reqwest::Response {
    browser.send(reqwest::Method::POST, "/api/auth/totp", Some(&json!({ "code": code }))).await
}

/// Signs `browser` in and starts an enrolment; returns it (secret, URI, QR code).
async fn begin_enrolment(browser: &mut Browser) -> Value {
    assert_eq!(browser.sign_in().await, "/");
    browser
        .send(reqwest::Method::POST, "/api/account/totp/enroll", Some(&json!({})))
        .await
        .json()
        .await
        .expect("json")
}

/// Signs `browser` in and enrols TOTP; returns the secret and the recovery codes.
async fn enrol(browser: &mut Browser) -> (String, Vec<String>) {
    let enrolment = begin_enrolment(browser).await;
    let secret = enrolment["secret"].as_str().expect("secret").to_string();
    assert!(
        enrolment["otpauth_uri"].as_str().unwrap_or_default().starts_with("otpauth://totp/"),
        "{enrolment}"
    );
    assert!(enrolment["qr_svg"].as_str().unwrap_or_default().starts_with("<svg"), "{enrolment}");
    let confirm = browser
        .send(
            reqwest::Method::POST,
            "/api/account/totp/confirm",
            Some(&json!({ "code": code_at(&secret, now()) })),
        )
        .await;
    assert_eq!(confirm.status(), 200);
    let body: Value = confirm.json().await.expect("json");
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

#[tokio::test]
async fn with_2fa_on_sign_in_needs_a_code_that_works_once_and_after_five_wrong_codes_a_minute_429() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut first = Browser::new(&cp.base_url);
    let (secret, recovery) = enrol(&mut first).await;
    assert_eq!(audit_count(&cp.db, "totp.enabled").await, 1);
    let sealed: String =
        sqlx::query_scalar("SELECT totp_sealed FROM users").fetch_one(&cp.db).await.expect("row");
    assert!(!sealed.contains(&secret), "the secret is sealed at rest");

    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/login/2fa");
    assert!(!browser.has_session() && browser.cookies.contains_key("wh_2fa"));
    // Wrong code 1.
    let wrong = post(&mut browser, "000000".into()).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.expect("json")["code"], "invalid_totp");
    // The next step's code (one step ahead is accepted; the current one was used to confirm).
    let code = code_at(&secret, now() + 30);
    let ok = post(&mut browser, code.clone()).await;
    assert_eq!(ok.status(), 200);
    assert!(browser.has_session() && !browser.cookies.contains_key("wh_2fa"));
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["user"]["totp_enabled"], true, "{body}");
    // Wrong code 2: the same code in a new sign-in.
    let mut again = Browser::new(&cp.base_url);
    assert_eq!(again.sign_in().await, "/login/2fa");
    assert_eq!(post(&mut again, code).await.status(), 401, "a used step is not accepted twice");
    // A recovery code, typed loosely, works once.
    let loose = recovery[0].to_uppercase().replace('-', " ");
    assert_eq!(post(&mut again, loose.clone()).await.status(), 200);
    let mut third = Browser::new(&cp.base_url);
    assert_eq!(third.sign_in().await, "/login/2fa");
    // Wrong code 3: that recovery code again.
    assert_eq!(post(&mut third, loose).await.status(), 401, "a recovery code works once");
    // Wrong codes 4 and 5, then the sixth try in the minute: 429, even with a good code.
    for _ in 0..2 {
        assert_eq!(post(&mut third, "999999".into()).await.status(), 401);
    }
    let limited = post(&mut third, recovery[1].clone()).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(audit_count(&cp.db, "auth.login_failed").await, 5, "each wrong code is audited");
}

#[tokio::test]
async fn fifty_parallel_posts_of_one_valid_code_make_exactly_one_session() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut owner = Browser::new(&cp.base_url);
    let (secret, _) = enrol(&mut owner).await;
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/login/2fa");
    let cookie = format!("wh_2fa={}", browser.cookies["wh_2fa"]);
    let code = code_at(&secret, now() + 30);
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let sessions_before = live_sessions(&cp.db).await;
    let posts = (0..50).map(|_| {
        let request =
            client.post(cp.url("/api/auth/totp")).header("cookie", &cookie).json(&json!({ "code": code }));
        async move { request.send().await.expect("post").status().as_u16() }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 401, 429].contains(s)), "{statuses:?}");
    assert_eq!(live_sessions(&cp.db).await, sessions_before + 1);
}

#[tokio::test]
async fn one_time_step_is_used_once_even_by_fifty_parallel_writers() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut owner = Browser::new(&cp.base_url);
    enrol(&mut owner).await;
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users").fetch_one(&cp.db).await.expect("user");
    let step = now() / 30 + 1;
    let writers = (0..50).map(|_| wisehosting_control_plane::store::totp::use_step(&cp.db, user_id, step));
    let results = futures_util::future::join_all(writers).await;
    let won = results.into_iter().filter(|r| *r.as_ref().expect("update")).count();
    assert_eq!(won, 1);
}

#[tokio::test]
async fn two_factor_is_turned_off_only_with_a_valid_code_and_enrolment_needs_one_too() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/");
    browser.send(reqwest::Method::POST, "/api/account/totp/enroll", Some(&json!({}))).await;
    let bad = browser
        .send(reqwest::Method::POST, "/api/account/totp/confirm", Some(&json!({"code": "123456"})))
        .await;
    assert_eq!(bad.status(), 401, "a wrong code does not turn 2FA on");
    let me: Value = browser.get("/api/me").await.json().await.expect("json");
    assert_eq!(me["user"]["totp_enabled"], false);

    let mut browser = Browser::new(&cp.base_url);
    let (secret, _) = enrol(&mut browser).await;
    let refused = browser
        .send(reqwest::Method::POST, "/api/account/totp/disable", Some(&json!({"code": "000000"})))
        .await;
    assert_eq!(refused.status(), 401);
    let off = browser
        .send(
            reqwest::Method::POST,
            "/api/account/totp/disable",
            Some(&json!({"code": code_at(&secret, now() + 30)})),
        )
        .await;
    assert_eq!(off.status(), 204);
    assert_eq!(audit_count(&cp.db, "totp.disabled").await, 1);
    assert_eq!(Browser::new(&cp.base_url).sign_in().await, "/", "no second step any more");
}

#[tokio::test]
async fn api_tokens_are_shown_once_scoped_revocable_and_never_manage_the_account() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let user = cp.login("scripts@example.com").await;
    let make = |scopes: Value| {
        let body = json!({ "name": "ci", "scopes": scopes, "expires_in_days": 30 });
        let user = &user;
        async move {
            let response = user.post_json("/api/account/tokens", &body).await;
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.expect("json")
        }
    };
    let read = make(json!(["read"])).await;
    let deploy = make(json!(["deploy"])).await;
    let write = make(json!(["write"])).await;
    let token = |t: &Value| t["token"].as_str().expect("token").to_string();
    assert!(token(&read).starts_with("wht_") && token(&read).len() >= 36, "{read}");
    let listed: Value = user.get("/api/account/tokens").await.json().await.expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    assert!(!listed.to_string().contains(&token(&read)), "values are never listed: {listed}");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_all(&cp.db).await.expect("rows");
    assert!(!stored.contains(&token(&read)), "only hashes are stored");

    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let call = |method: reqwest::Method, path: &str, t: &Value, body: Option<Value>| {
        let mut request = client.request(method, cp.url(path)).bearer_auth(token(t));
        if let Some(body) = body {
            // A foreign Origin: bearer requests carry no ambient credential, so no CSRF check.
            request = request.header("origin", "http://127.0.0.1:1").json(&body);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let app = json!({ "name": "tokened", "repo_url": "https://example.com/r.git", "port": 8080 });
    assert_eq!(call(reqwest::Method::GET, "/api/apps", &read, None).await.0, 200, "read reads");
    let (status, body) = call(reqwest::Method::POST, "/api/deploy", &read, Some(app.clone())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("deploy"),
        "names the scope needed: {body}"
    );
    let (status, body) = call(reqwest::Method::POST, "/api/deploy", &deploy, Some(app)).await;
    assert_eq!(status, 201, "deploy deploys: {body}");
    let app_id = body["app"]["id"].as_i64().or(body["app_id"].as_i64()).expect("app id");
    let env_path = format!("/api/apps/{app_id}/env");
    let env = Some(json!({ "GREETING": "hi" }));
    assert_eq!(
        call(reqwest::Method::PUT, &env_path, &deploy, env.clone()).await.0,
        403,
        "deploy is not write"
    );
    assert_eq!(
        call(reqwest::Method::PUT, &env_path, &write, env).await.0,
        200,
        "write does every app action"
    );
    for (method, path) in [
        (reqwest::Method::GET, "/api/account/tokens"),
        (reqwest::Method::GET, "/api/account/sessions"),
        (reqwest::Method::POST, "/api/account/totp/enroll"),
        (reqwest::Method::POST, "/api/auth/logout"),
    ] {
        let body = (method == reqwest::Method::POST).then(|| json!({}));
        let (status, answer) = call(method.clone(), path, &write, body).await;
        assert_eq!((status, answer["code"].as_str()), (403, Some("insufficient_scope")), "{method} {path}");
    }
    // The deploy token's days pass.
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(deploy["id"].as_i64().expect("id"))
        .execute(&cp.db)
        .await
        .expect("age");
    assert_eq!(
        call(reqwest::Method::GET, "/api/apps", &deploy, None).await.0,
        401,
        "an expired token is refused"
    );
    let id = read["id"].as_i64().expect("id");
    let revoked = user
        .request(reqwest::Method::DELETE, &format!("/api/account/tokens/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(revoked.status(), 204);
    assert_eq!(call(reqwest::Method::GET, "/api/apps", &read, None).await.0, 401, "revoked at once");
    assert_eq!(audit_count(&cp.db, "token.created").await, 3);
    let ips: Vec<Option<String>> =
        sqlx::query_scalar("SELECT ip FROM audit_events WHERE action = 'token.created'")
            .fetch_all(&cp.db)
            .await
            .expect("ips");
    assert_eq!(ips, vec![Some("127.0.0.1".to_string()); 3], "audit rows say where the action came from");
    assert_eq!(audit_count(&cp.db, "token.revoked").await, 1);
    let (status, _) =
        call(reqwest::Method::GET, "/api/apps", &json!({"token": "wht_not-a-token"}), None).await;
    assert_eq!(status, 401);

    for (body, field) in [
        (json!({"name": "", "scopes": ["read"], "expires_in_days": null}), "name"),
        (json!({"name": "x", "scopes": ["admin"], "expires_in_days": null}), "scopes"),
        (json!({"name": "x", "scopes": [], "expires_in_days": null}), "scopes"),
        (json!({"name": "x", "scopes": ["read"], "expires_in_days": 0}), "expires_in_days"),
    ] {
        let response = user.post_json("/api/account/tokens", &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let answer: Value = response.json().await.expect("json");
        assert!(answer["message"].as_str().unwrap_or_default().starts_with(field), "{answer}");
    }
}

#[tokio::test]
async fn an_expired_2fa_challenge_or_none_gets_401_not_a_session() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    let response =
        client.post(cp.url("/api/auth/totp")).json(&json!({"code": "123456"})).send().await.expect("post");
    assert_eq!(response.status(), 401);
    let response = client
        .post(cp.url("/api/auth/totp"))
        .header("cookie", "wh_2fa=wh2_forged")
        .json(&json!({"code": "123456"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_session_lives_thirty_days_from_sign_in_and_ends_at_that_second() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let user = cp.login("month@example.com").await;
    let token = user.cookie.trim_start_matches("wh_session=").to_string();
    assert!(token.len() >= 4 + 22, "at least 128 random bits: {token}");
    let lifetime: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM expires_at - created_at)::float8 FROM sessions")
            .fetch_one(&cp.db)
            .await
            .expect("session");
    assert_eq!(lifetime, 30.0 * 86_400.0, "30 days, absolute");
    // Thirty days pass: the session's end comes to 2 s from now.
    sqlx::query("UPDATE sessions SET expires_at = now() + interval '2 seconds'")
        .execute(&cp.db)
        .await
        .expect("age");
    assert_eq!(user.get("/api/me").await.status(), 200, "just before its end: accepted");
    let refused_after_end = wisehosting_testkit::eventually(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(100),
        || async {
            let refused = user.get("/api/me").await.status() == 401;
            let ended = sqlx::query_scalar::<_, bool>("SELECT now() >= expires_at FROM sessions")
                .fetch_one(&cp.db)
                .await
                .expect("ended");
            assert!(!refused || ended, "refused before the session's end");
            refused
        },
    )
    .await;
    assert!(refused_after_end, "just after its end: refused, and not before");
}

#[tokio::test]
async fn a_provider_signing_with_es256_is_accepted() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    assert_eq!(Browser::new(&cp.base_url).sign_in().await, "/", "RS256 first (the keys get cached)");
    idp.sign_with_es256();
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/", "an ES256 token, its key fetched on its unknown kid");
    assert!(browser.has_session());
}

#[tokio::test]
async fn a_redirect_away_from_the_issuer_is_not_followed_and_a_dead_provider_is_a_clear_failure() {
    let idp = FakeOidc::start().await;
    // An "issuer" whose discovery document redirects to the real provider's.
    let target = format!("{}/.well-known/openid-configuration", idp.issuer());
    let redirector = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let target = target.clone();
            async move { (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, target)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let redirecting_issuer = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, redirector).await });
    let issuer = redirecting_issuer.clone();
    let cp = spawn_control_plane_with_oidc(&idp, move |c| c.oidc.issuer_url = issuer.clone()).await;
    let mut browser = Browser::new(&cp.base_url);
    let start = browser.get("/api/auth/google/login").await;
    assert_eq!(Browser::location(&start), "/login?error=provider_unavailable");
    assert_eq!(idp.discovery_fetches(), 0, "the redirect was not followed");

    let dead = spawn_control_plane_with_oidc(&idp, |c| c.oidc.issuer_url = "http://127.0.0.1:9".into()).await;
    let mut browser = Browser::new(&dead.base_url);
    let start = browser.get("/api/auth/google/login").await;
    assert_eq!(Browser::location(&start), "/login?error=provider_unavailable");
    assert!(!browser.has_session());
    assert_eq!(audit_count(&dead.db, "auth.login_failed").await, 1);
}

#[tokio::test]
async fn an_enrolment_left_pending_lapses_and_is_pruned() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut browser = Browser::new(&cp.base_url);
    let enrolment = begin_enrolment(&mut browser).await;
    let secret = enrolment["secret"].as_str().expect("secret").to_string();
    // Two hours pass.
    sqlx::query("UPDATE users SET totp_pending_since = now() - interval '2 hours'")
        .execute(&cp.db)
        .await
        .expect("age");
    let late = browser
        .send(
            reqwest::Method::POST,
            "/api/account/totp/confirm",
            Some(&json!({"code": code_at(&secret, now())})),
        )
        .await;
    assert_eq!(late.status(), 409, "a lapsed enrolment cannot be confirmed");
    let pruned = wisehosting_control_plane::store::totp::prune_pending(&cp.db).await.expect("prune");
    assert_eq!(pruned, 1);
    let sealed: Option<String> =
        sqlx::query_scalar("SELECT totp_sealed FROM users").fetch_one(&cp.db).await.expect("row");
    assert_eq!(sealed, None, "the pending secret is gone");
}
