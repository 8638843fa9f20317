//! Rollback (issue 16; SPEC §14.6): a new deployment of an earlier successful one — its image
//! run without a build while the worker keeps it, its commit built again once pruned — through
//! the same health check and switch as a deploy.

use serde_json::{Value, json};
use wisehosting_testkit::{TestRepo, UserSession, eventually};

use super::deploy::{
    LIMIT, POLL, app, containerfile, deploy_and_wait, platform, platform_with_settings, serves,
};

async fn roll_back(user: &UserSession, app_id: i64, deployment: &Value) -> (u16, Value) {
    let r = user
        .post_json(&format!("/api/apps/{app_id}/rollback"), &json!({ "deployment_id": deployment["id"] }))
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn build_log(user: &UserSession, deployment: i64) -> String {
    let log: Value = user.get(&format!("/api/deployments/{deployment}/log")).await.json().await.expect("log");
    log["log"].as_str().unwrap_or_default().to_string()
}

/// Deploys v1 then v2 of a page; returns the app and both (finished) deployments.
async fn two_versions(user: &UserSession, repo: &TestRepo, name: &str) -> (i64, Value, Value) {
    repo.commit(&[("Containerfile", &containerfile("version-one"))], "v1");
    let (app_id, d1) =
        deploy_and_wait(user, json!({ "name": name, "repo_url": repo.url(), "port": 8080 })).await;
    assert_eq!(d1["status"], "running", "{d1}");
    repo.commit(&[("Containerfile", &containerfile("version-two"))], "v2");
    let d2 = user.wait_deployment(user.redeploy(app_id).await, LIMIT).await;
    assert_eq!(d2["status"], "running", "{d2}");
    assert!(serves(user, app_id, "version-two").await);
    (app_id, d1, d2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_runs_the_earlier_image_without_a_build_and_names_what_it_rolled_back_to() {
    let (_cp, _agent, user, repo) = platform("rollback", "roll@example.com").await;
    let (app_id, d1, d2) = two_versions(&user, &repo, "rolling").await;

    // Refusals name the problem: the running version, another app's or no deployment, one
    // that never ran.
    let (status, body) = roll_back(&user, app_id, &d2).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("running version already"), "{body}");
    let (status, body) = roll_back(&user, app_id, &json!({ "id": 999_999 })).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_input")), "{body}");
    repo.commit(&[("Containerfile", "FROM localhost/wisehosting/busybox:latest\nRUN exit 3\n")], "broken");
    let broken = user.wait_deployment(user.redeploy(app_id).await, LIMIT).await;
    assert_eq!(broken["status"], "failed");
    let (status, body) = roll_back(&user, app_id, &broken).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("never ran"), "{body}");

    let (status, rollback) = roll_back(&user, app_id, &d1).await;
    assert_eq!(status, 202, "{rollback}");
    assert_eq!(
        (rollback["rollback_of"].clone(), rollback["commit"].clone()),
        (d1["id"].clone(), d1["commit"].clone())
    );
    let id = rollback["id"].as_i64().expect("id");
    let done = user.wait_deployment(id, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    assert_eq!(done["image_id"], d1["image_id"], "the very image v1 built");
    assert!(serves(&user, app_id, "version-one").await, "v1 serves again");
    let log = build_log(&user, id).await;
    assert!(log.contains("still on this worker; no build") && !log.contains("STEP 1/"), "{log}");
    let list: Value = user.get(&format!("/api/apps/{app_id}/deployments")).await.json().await.expect("list");
    assert_eq!(list[0]["rollback_of"], d1["id"], "shown as a rollback of #{}: {list}", d1["id"]);
    assert_eq!(app(&user, app_id).await["current_deployment_id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_image_the_worker_pruned_builds_that_commit_again() {
    let (_cp, _agent, user) =
        platform_with_settings("rollback-pruned", "pruned@example.com", "  keep_images: 1\n").await;
    let repo = TestRepo::new();
    let (app_id, d1, _) = two_versions(&user, &repo, "pruned").await;
    // Keeping one image, the worker untags v1's after the switch to v2, and podman drops it.
    let image = d1["image_id"].as_str().expect("image").to_string();
    let gone = eventually(LIMIT, POLL, || async {
        let exists = std::process::Command::new("podman").args(["image", "exists", "--", &image]).status();
        exists.is_ok_and(|s| !s.success())
    })
    .await;
    assert!(gone, "v1's image was pruned");

    let (status, rollback) = roll_back(&user, app_id, &d1).await;
    assert_eq!(status, 202, "{rollback}");
    let id = rollback["id"].as_i64().expect("id");
    let done = user.wait_deployment(id, LIMIT).await;
    assert_eq!(done["status"], "running", "{done}");
    assert!(serves(&user, app_id, "version-one").await, "v1's commit, built again, serves");
    let log = build_log(&user, id).await;
    let commit = d1["commit"].as_str().expect("commit");
    assert!(log.contains("no longer on this worker; building its commit again"), "{log}");
    assert!(
        log.contains(&format!("checked out {commit}")),
        "the earlier commit, not the branch's head: {log}"
    );
}
