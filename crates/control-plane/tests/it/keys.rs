//! The column-encryption key's seal count is persisted, so its limit holds across restarts.

use serde_json::json;
use wisehosting_testkit::{TestRepo, fresh_database, spawn_control_plane_on};

async fn persisted(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT seals FROM key_usage WHERE key_version = 1").fetch_one(db).await.expect("row")
}

#[tokio::test]
async fn the_seal_count_survives_a_restart_and_keeps_growing() {
    let url = fresh_database(true).await;
    let first = spawn_control_plane_on(&url, |c| c.single_machine = true).await;
    let secret = first.config.api_server.secret.clone();
    let user = first.login("keys@example.com").await;
    let repo = TestRepo::new();
    repo.commit(&[("index.html", "hi")], "v1");
    let deployed = user
        .post_json(
            "/api/deploy",
            &json!({"name": "sealed", "repo_url": repo.url(), "port": 8080, "env": {"A": "1", "B": "2"}}),
        )
        .await;
    assert_eq!(deployed.status(), 201);
    let app = deployed.json::<serde_json::Value>().await.expect("json")["app"]["id"].as_i64().expect("id");
    // The test's own pool: the control plane closes its pool when it stops.
    let db = sqlx::PgPool::connect(&url).await.expect("connect");
    first.stop().await.expect("graceful stop");
    let after_first = persisted(&db).await;
    assert!(after_first >= 3, "two env values and the job payload were sealed: {after_first}");

    // A new process over the same database starts from the persisted count: one more seal
    // stores more than before (a count started at zero would leave the row as it was).
    let second = spawn_control_plane_on(&url, move |c| {
        c.single_machine = true;
        c.api_server.secret = secret;
    })
    .await;
    let user = second.login("keys@example.com").await;
    let put = user
        .request(reqwest::Method::PUT, &format!("/api/apps/{app}/env"))
        .json(&json!({"C": "3"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 200);
    second.stop().await.expect("graceful stop");
    assert!(persisted(&db).await > after_first, "the count went on from {after_first}");
}
