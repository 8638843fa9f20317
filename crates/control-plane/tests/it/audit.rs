//! The audit trail (SECURITY-TESTS T26): each privileged action commits with its row or not at
//! all, and what users send is stored safely.

use serde_json::{Value, json};
use wisehosting_testkit::{Browser, FakeOidc, spawn_control_plane_with, spawn_control_plane_with_oidc};

/// Makes every insert into `audit_events` fail, as a full disk or a broken replica would: a
/// fault injected into the real database, not a state production writes.
async fn refuse_audit_rows(db: &sqlx::PgPool, refuse: bool) {
    if refuse {
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'audit rows refused by the test'; END $$;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        )
        .execute(db)
        .await
        .expect("trigger");
    } else {
        sqlx::raw_sql("DROP TRIGGER refuse_audit ON audit_events; DROP FUNCTION refuse_audit();")
            .execute(db)
            .await
            .expect("drop trigger");
    }
}

#[tokio::test]
async fn an_action_whose_audit_row_cannot_be_written_does_not_happen() {
    let cp = spawn_control_plane_with(|c| c.single_machine = true).await;
    let user = cp.login("careful@example.com").await;
    let (app, _) = user.deploy("audited", "https://example.com/r.git").await;
    let env_path = format!("/api/apps/{app}/env");
    let put_env = |value: &str| {
        let body = json!({ "GREETING": value });
        user.request(reqwest::Method::PUT, &env_path).json(&body).send()
    };
    assert_eq!(put_env("before").await.expect("put").status(), 200);
    let rows_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&cp.db).await.expect("count");

    refuse_audit_rows(&cp.db, true).await;
    let refused = put_env("after").await.expect("put");
    assert_eq!(refused.status(), 500);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "internal", "{body}");
    assert!(!body.to_string().contains("refused by the test"), "no internal detail leaks: {body}");
    let token = user
        .post_json("/api/account/tokens", &json!({"name": "x", "scopes": ["read"], "expires_in_days": null}))
        .await;
    assert_eq!(token.status(), 500);
    let redeploy = user.post_json(&format!("/api/apps/{app}/deployments"), &json!({})).await;
    assert_eq!(redeploy.status(), 500);
    let logout = user.request(reqwest::Method::POST, "/api/auth/logout").send().await.expect("logout");
    assert_eq!(logout.status(), 500);
    refuse_audit_rows(&cp.db, false).await;

    let revealed: Value = user.get(&format!("{env_path}?reveal=true")).await.json().await.expect("json");
    assert_eq!(revealed["env"]["GREETING"], "before", "the env write was rolled back");
    let tokens: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_tokens").fetch_one(&cp.db).await.expect("count");
    assert_eq!(tokens, 0, "no token without its audit row");
    let deployments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&cp.db).await.expect("count");
    assert_eq!(deployments, 1, "no deployment (nor job) without its audit row");
    assert_eq!(user.get("/api/me").await.status(), 200, "the session was not revoked");
    let rows_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&cp.db).await.expect("count");
    assert_eq!(rows_after, rows_before + 1, "only the reveal wrote a row");
}

#[tokio::test]
async fn control_characters_from_outside_are_stored_and_shown_escaped() {
    let idp = FakeOidc::start().await;
    let cp = spawn_control_plane_with_oidc(&idp, |_| {}).await;
    let mut browser = Browser::new(&cp.base_url);
    // The provider's refusal, as an attacker would craft it: a NUL, an escape sequence, a newline.
    let landed = browser.finish("/api/auth/google/callback?error=no%00pe%1B%5B31m%0Aforged&state=x").await;
    assert_eq!(landed, "/login?error=provider_error");
    let detail: String =
        sqlx::query_scalar("SELECT detail->>'detail' FROM audit_events WHERE action = 'auth.login_failed'")
            .fetch_one(&cp.db)
            .await
            .expect("the failure was audited despite the NUL");
    assert!(detail.contains("no\u{FFFD}pe\u{1b}[31m\nforged"), "{detail:?}");

    // A display name from the provider loses its control characters before it is stored.
    idp.set_user("sub-esc", "esc@example.com", "Eve\u{1b}[2J");
    let mut browser = Browser::new(&cp.base_url);
    assert_eq!(browser.sign_in().await, "/");
    let raw = browser.get("/api/me").await.text().await.expect("text");
    assert!(!raw.contains('\u{1b}'), "{raw:?}");
    let me: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(me["user"]["name"], "Eve[2J");
    // What the audit API shows of a detail with control characters is JSON-escaped.
    let events = browser.get("/api/account/audit").await.text().await.expect("text");
    assert!(!events.contains('\u{1b}') && !events.contains('\n'), "{events:?}");
}
