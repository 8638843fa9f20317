//! The signed-in user's account and the public plans: `/api/me`, `/api/plans` and the plan
//! limits, the audit trail, sessions.

use serde_json::{Value, json};
use wisehosting_testkit::spawn_control_plane_with;

use super::queue::single;

#[tokio::test]
async fn the_plans_are_public_and_a_day_holds_at_most_the_plans_deploys() {
    let cp = single().await;
    let plans: Value =
        cp.client.get(cp.url("/api/plans")).send().await.expect("plans").json().await.expect("json");
    assert_eq!(
        plans,
        json!([{"name": "free", "limits": {"apps": 5, "memory_mb": 256, "cpus": 0.5, "custom_domains": 1,
                                            "deploys_per_day": 100}}]),
        "signed out, the plans and their limits"
    );
    let user = cp.login("busy@example.com").await;
    let (app, _) = user.deploy("busy", "https://example.com/r.git").await;
    for round in 1..100 {
        let r = user.post_json(&format!("/api/apps/{app}/deployments"), &json!({})).await;
        assert_eq!(r.status(), 201, "deploy {} of the day", round + 1);
    }
    let over = user.post_json(&format!("/api/apps/{app}/deployments"), &json!({})).await;
    assert_eq!(over.status(), 402);
    let body: Value = over.json().await.expect("json");
    assert_eq!(body["code"], "plan_limit", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("deploys_per_day"), "{body}");
    let deployments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&cp.db).await.expect("count");
    assert_eq!(deployments, 100, "the refused deploy left no row");
}

#[tokio::test]
async fn the_configured_plans_set_the_limits_and_are_listed() {
    use wisehosting_control_plane::plans::PlanConfig;
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.plans = vec![
            PlanConfig { name: "free".into(), apps: Some(2), ..PlanConfig::default() },
            PlanConfig { name: "pro".into(), apps: Some(20), memory_mb: Some(1024), ..PlanConfig::default() },
        ];
    })
    .await;
    let plans: Value =
        cp.client.get(cp.url("/api/plans")).send().await.expect("plans").json().await.expect("json");
    assert_eq!(plans[0]["limits"]["apps"], 2, "{plans}");
    assert_eq!(plans[1]["name"], "pro", "{plans}");
    assert_eq!(plans[1]["limits"]["memory_mb"], 1024, "{plans}");
    assert_eq!(plans[1]["limits"]["deploys_per_day"], 100, "unset limits are free's: {plans}");
    let user = cp.login("two-apps@example.com").await;
    for name in ["one", "two"] {
        user.deploy(name, "https://example.com/r.git").await;
    }
    let third = user
        .post_json(
            "/api/deploy",
            &json!({"name": "three", "repo_url": "https://example.com/r.git", "port": 8080}),
        )
        .await;
    assert_eq!(third.status(), 402);
    let body: Value = third.json().await.expect("json");
    assert_eq!(body["code"], "plan_limit", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("allows 2 apps (limit `apps`)"), "{body}");
}

#[tokio::test]
async fn me_is_the_dashboards_state_user_plan_apps_with_urls_and_platform() {
    let cp = spawn_control_plane_with(|c| {
        c.single_machine = true;
        c.apps_port = Some(8080);
    })
    .await;
    let user = cp.login("me@example.com").await;
    let (app, deployment) = user.deploy("My Site", "https://example.com/r.git").await;
    let mut me: Value = user.get("/api/me").await.json().await.expect("json");
    let last = me["apps"][0]["last_deployment"].take();
    assert_eq!((last["id"].as_i64(), last["status"].as_str()), (Some(deployment), Some("queued")), "{last}");
    assert!(last["created_at"].is_string(), "{last}");
    assert_eq!(me["user"]["email"], "me@example.com", "{me}");
    assert_eq!(me["user"]["theme"], "system", "{me}");
    assert_eq!(me["user"]["totp_enabled"], false, "{me}");
    assert_eq!(me["plan"]["name"], "free", "{me}");
    assert_eq!(me["plan"]["limits"]["apps"], 5, "{me}");
    assert_eq!(
        me["apps"],
        json!([{"id": app, "name": "My Site", "slug": "my-site", "status": "deploying",
                "url": "http://my-site.localhost:8080/", "last_deployment": null}]),
        "{me}"
    );
    assert_eq!(me["git_providers"], json!([]));
    assert_eq!(me["platform"]["mode"], "single_machine");
    assert!(me["platform"]["version"].as_str().is_some_and(|v| !v.is_empty()), "{me}");
    let other = cp.login("other@example.com").await;
    let theirs: Value = other.get("/api/me").await.json().await.expect("json");
    assert_eq!(theirs["apps"], json!([]), "another user's apps never show");
}

#[tokio::test]
async fn the_audit_trail_is_the_users_own_paged_newest_first() {
    let cp = single().await;
    let user = cp.login("audited@example.com").await;
    let (app, _) = user.deploy("audited", "https://example.com/r.git").await;
    for round in 0..3 {
        let r = user.post_json(&format!("/api/apps/{app}/deployments"), &json!({})).await;
        assert_eq!(r.status(), 201, "redeploy {round}");
    }
    let r = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app}/env"))
        .json(&json!({"GREETING": "hi"}))
        .send()
        .await
        .expect("env");
    assert_eq!(r.status(), 200);
    let first: Value = user.get("/api/account/audit?limit=3").await.json().await.expect("json");
    let events = first["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "{first}");
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["env.written", "app.deployed", "app.deployed"], "newest first: {first}");
    assert!(events.iter().all(|e| e["id"].is_i64() && e["at"].is_string()), "{first}");
    let next = first["next"].as_i64().expect("a next page");
    let second: Value =
        user.get(&format!("/api/account/audit?limit=3&before={next}")).await.json().await.expect("json");
    let actions: Vec<&str> =
        second["events"].as_array().expect("events").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["app.deployed", "app.deployed", "auth.login"], "{second}");
    let third: Value = user
        .get(&format!("/api/account/audit?limit=3&before={}", second["next"].as_i64().expect("next")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(third["next"], Value::Null, "the last page: {third}");
    let other = cp.login("someone-else@example.com").await;
    let theirs: Value = other.get("/api/account/audit").await.json().await.expect("json");
    let actions: Vec<&str> =
        theirs["events"].as_array().expect("events").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["auth.login"], "only their own: {theirs}");
    let bad = other.get("/api/account/audit?limit=0").await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn a_user_lists_their_sessions_and_revokes_one_or_all_others() {
    let cp = single().await;
    let laptop = cp.login("sessions@example.com").await;
    let phone = cp.login("sessions@example.com").await;
    let listed: Value = laptop.get("/api/account/sessions").await.json().await.expect("json");
    let listed = listed.as_array().expect("list").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed.iter().filter(|s| s["current"] == true).count(), 1, "{listed:?}");
    assert!(
        listed.iter().all(|s| s["created_at"].is_string() && s["last_seen_at"].is_string()),
        "{listed:?}"
    );
    let phone_id =
        listed.iter().find(|s| s["current"] == false).and_then(|s| s["id"].as_i64()).expect("the other");

    // Another user cannot revoke it: the same 404 as no session at all.
    let stranger = cp.login("stranger@example.com").await;
    let r = stranger
        .request(reqwest::Method::DELETE, &format!("/api/account/sessions/{phone_id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);
    assert_eq!(phone.get("/api/me").await.status(), 200, "still signed in");

    let r = laptop
        .request(reqwest::Method::DELETE, &format!("/api/account/sessions/{phone_id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(phone.get("/api/me").await.status(), 401, "revoked at once");

    let tablet = cp.login("sessions@example.com").await;
    let r = laptop.post_json("/api/account/sessions/revoke-others", &json!({})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(tablet.get("/api/me").await.status(), 401, "signed out everywhere else");
    assert_eq!(laptop.get("/api/me").await.status(), 200, "but here");
    let trail: Value = laptop.get("/api/account/audit").await.json().await.expect("json");
    let revoked = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["action"] == "session.revoked")
        .count();
    assert_eq!(revoked, 2, "{trail}");
}

#[tokio::test]
async fn the_theme_is_saved_for_the_user_and_only_known_themes_are_taken() {
    let cp = single().await;
    let user = cp.login("dark@example.com").await;
    let set = |theme: &str| {
        user.request(reqwest::Method::PUT, "/api/account/theme").json(&json!({ "theme": theme })).send()
    };
    assert_eq!(set("dark").await.expect("put").status(), 204);
    let me: Value = user.get("/api/me").await.json().await.expect("json");
    assert_eq!(me["user"]["theme"], "dark");
    let bad = set("neon").await.expect("put");
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or_default().contains("system, light or dark"), "{body}");
}
